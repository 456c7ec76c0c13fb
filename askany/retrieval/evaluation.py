"""Retrieval evaluation on a question set: hit@1/5/10, MRR and answer-in-context@5 per retrieval setup.

Reads the `queries.jsonl` format of shared/eval as it is: {"id", "question",
"answers": [...], "doc_id"} where doc_id is the gold file's name without its
suffix. Metrics follow shared/eval/README.md: chunks are mapped to their
documents (first occurrence counts) and MRR is 0 past rank 100.
"""

from __future__ import annotations

import json
import logging
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from askany.context import AskAny
from askany.core.errors import AskAnyError
from askany.models.registry import embedding_dimension
from askany.retrieval.retriever import QueryError, Retriever
from askany.storage.store import SearchFilter

log = logging.getLogger(__name__)

SETUPS: dict[str, tuple[str, bool]] = {
    "keyword": ("keyword", False),
    "vector": ("vector", False),
    "hybrid": ("hybrid", False),
    "hybrid+rerank": ("hybrid", True),
}
DEPTH = 100


@dataclass
class EvalQuery:
    id: str
    question: str
    answers: list[str]
    doc_id: str


@dataclass
class SetupScore:
    setup: str
    questions: int = 0
    hit1: float = 0.0
    hit5: float = 0.0
    hit10: float = 0.0
    mrr: float = 0.0
    answer_in_context5: float = 0.0
    seconds: float = 0.0
    unavailable: str = ""
    ranks: list[int] = field(default_factory=list, repr=False)


def read_queries(path: Path) -> list[EvalQuery]:
    """Parse a queries.jsonl file; a malformed line is an error naming the line."""
    if not path.is_file():
        raise AskAnyError(f"Question file {path} does not exist; pass a queries.jsonl file to --eval")
    queries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            queries.append(EvalQuery(str(item["id"]), str(item["question"]),
                                     [str(a) for a in item.get("answers") or []], str(item["doc_id"])))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise AskAnyError(f"Line {number} of {path} is not a valid question ({error}); each line needs "
                              f"id, question, answers and doc_id") from None
    if not queries:
        raise AskAnyError(f"{path} holds no questions")
    return queries


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def document_ranking(sources: list[str]) -> list[str]:
    """Chunk sources -> document ids in order of first appearance."""
    return list(dict.fromkeys(Path(source).stem for source in sources))


def score_setup(setup: str, ranked_docs: list[list[str]], contexts: list[list[str]],
                queries: list[EvalQuery]) -> SetupScore:
    score = SetupScore(setup, questions=len(queries))
    n = len(queries)
    for query, docs, texts in zip(queries, ranked_docs, contexts, strict=True):
        rank = docs.index(query.doc_id) + 1 if query.doc_id in docs[:DEPTH] else 0
        score.ranks.append(rank)
        score.hit1 += rank == 1
        score.hit5 += 0 < rank <= 5
        score.hit10 += 0 < rank <= 10
        score.mrr += 1 / rank if rank else 0.0
        answers = [_nfkc(answer) for answer in query.answers if answer]
        score.answer_in_context5 += any(answer in _nfkc(text) for text in texts[:5] for answer in answers)
    for name in ("hit1", "hit5", "hit10", "mrr", "answer_in_context5"):
        setattr(score, name, round(getattr(score, name) / n, 4) if n else 0.0)
    return score


def unavailable_reason(app: AskAny, setup: str) -> str:
    """Why a setup cannot run here (its model is missing or switched off), or "" when it can."""
    mode, rerank = SETUPS[setup]
    if mode in ("vector", "hybrid"):
        if not app.settings.embedding_enabled:
            return "EMBEDDING_ENABLED is off"
        model = app.embedding_model()
        if model is None:
            return str(app.models.error("embedding"))
        try:
            app.store.check_vector_model(app.settings.embedding_model_name, embedding_dimension(model))
        except AskAnyError as error:
            return str(error)
    if rerank:
        if not app.settings.reranker_enabled:
            return "RERANKER_ENABLED is off"
        if app.models.optional("reranker") is None:
            return str(app.models.error("reranker"))
    return ""


def evaluate(app: AskAny, queries: list[EvalQuery], kb: str | None = None, setups: list[str] | None = None,
             progress: bool = True) -> list[SetupScore]:
    from tqdm import tqdm

    retriever = Retriever(app)
    search_filter = SearchFilter(kbs=[kb] if kb else None)
    scores = []
    primed = False
    for setup in setups or list(SETUPS):
        reason = unavailable_reason(app, setup)
        if reason:
            scores.append(SetupScore(setup, unavailable=reason))
            continue
        mode, rerank = SETUPS[setup]
        started = time.perf_counter()
        if mode != "keyword" and not primed:
            retriever.prime_query_embeddings([query.question for query in queries])
            primed = True
        ranked_docs, contexts = [], []
        for query in tqdm(queries, desc=setup, unit="q", disable=not progress):
            try:
                hits = retriever.retrieve(query.question, mode=mode, top_k=DEPTH, rerank=rerank,
                                          search_filter=search_filter).hits
            except QueryError:  # an empty or unsearchable question counts as a miss
                hits = []
            ranked_docs.append(document_ranking([hit.chunk.source for hit in hits]))
            contexts.append([hit.chunk.text for hit in hits[:5]])
        score = score_setup(setup, ranked_docs, contexts, queries)
        score.seconds = round(time.perf_counter() - started, 2)
        scores.append(score)
    return scores


def eval_kb_name(docs_dir: Path) -> str:
    return f"eval-{docs_dir.resolve().name}"


def scores_as_dict(scores: list[SetupScore]) -> list[dict[str, Any]]:
    return [{key: value for key, value in vars(score).items() if key != "ranks"} for score in scores]
