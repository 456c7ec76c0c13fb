"""Asking a question: filters, query-type routing (AUTO / FAQ / DOCS), retrieval, then the answer.

AUTO looks at FAQ entries first: when the best one matches confidently
(FAQ_SCORE_THRESHOLD) its answer is returned as is; otherwise the documents
answer, with the weaker FAQ hits passed along marked as lower confidence.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from askany.context import AskAny
from askany.generation import Answer, Answerer, GenerationOptions, Passage, citation_numbers
from askany.retrieval.retriever import (
    Hit,
    Mode,
    QueryError,
    RetrievalResult,
    Retriever,
    checked_question,
    checked_top_k,
    parse_tags,
)
from askany.storage.store import SearchFilter

QueryType = Literal["AUTO", "FAQ", "DOCS"]
QUERY_TYPES: tuple[str, ...] = ("AUTO", "FAQ", "DOCS")
WEAK_FAQ_PASSAGES = 2
LOCATION_KEYS = ("page", "slide")  # chunk metadata the loaders record (askany/ingestion/chunking.py)
NO_FAQ_MATCH = "没有找到匹配的常见问题。"


@dataclass
class Source:
    number: int
    source: str
    title: str
    heading_path: list[str]
    text: str
    kb: str
    is_faq: bool
    low_confidence: bool
    stages: dict[str, dict[str, float]]
    location: dict[str, int] = field(default_factory=dict)  # {"page": 3} (PDFs, scans) or {"slide": 2}
    chunk_id: int | None = None  # the stored chunk, for reading it in its document (Service.passage_context)


@dataclass
class QAResult:
    question: str
    query_type: str
    routed_to: str  # "faq" or "docs"
    answer: Answer
    sources: list[Source]
    timings: dict[str, float] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    def cited_sources(self) -> list[Source]:
        return [source for source in self.sources if source.number in self.answer.citations]


def _source(number: int, hit: Hit, low_confidence: bool = False) -> Source:
    chunk = hit.chunk
    return Source(number=number, source=chunk.source, title=chunk.title, heading_path=list(chunk.heading_path),
                  text=chunk.text, kb=chunk.kb, is_faq=chunk.is_faq, low_confidence=low_confidence,
                  stages={name: {"rank": stage.rank, "score": round(stage.score, 6)}
                          for name, stage in hit.stages.items()},
                  location={key: chunk.metadata[key] for key in LOCATION_KEYS if key in chunk.metadata},
                  chunk_id=chunk.id)


def _passage(source: Source) -> Passage:
    return Passage(number=source.number, text=source.text, source=source.source, title=source.title,
                   heading_path=source.heading_path, low_confidence=source.low_confidence)


class QA:
    def __init__(self, app: AskAny, answerer: Answerer | None = None):
        self.app = app
        self.retriever = Retriever(app)
        self.answerer = answerer or Answerer(app.settings, app.models)

    def faq_confidence(self, question: str, hit: Hit) -> float:
        """How sure we are that an FAQ entry answers the question, on a 0..1 scale.

        The reranker's probability when it ran, else the cosine similarity, else the share of the
        question's keyword terms found in the FAQ question (BM25 scores have no fixed scale).
        """
        if "rerank" in hit.stages:
            return hit.stages["rerank"].score
        if "vector" in hit.stages:
            return hit.stages["vector"].score
        analyzer = self.app.analyzer
        asked = set(analyzer.terms(question))
        faq_question = hit.chunk.metadata.get("question") or hit.chunk.text
        return len(asked & set(analyzer.terms(faq_question))) / len(asked) if asked else 0.0

    def check(self, kbs: list[str] | None, tags: list[str] | None) -> SearchFilter:
        """The filter for these knowledge bases and tags; raises QueryError naming the fix when one is
        unknown or nothing is stored under them (cheap: index lookups only)."""
        self.retriever.check_filters(kbs, tags)
        base = SearchFilter(kbs=kbs or None, tags=tags or None)
        if not self.app.store.has_chunks(base):
            raise QueryError("The knowledge base is empty; add documents first with: "
                             "python -m askany.main --ingest PATH")
        return base

    def ask_stream(self, question: str, *, query_type: str = "AUTO", mode: Mode = "hybrid",
                   top_k: int | None = None, rerank: bool = True, kbs: list[str] | None = None,
                   tags: list[str] | None = None, thinking: bool | None = None,
                   history: list[dict[str, str]] | None = None,
                   generation: GenerationOptions | None = None,
                   stop: threading.Event | None = None) -> Iterator[tuple[str, Any]]:
        """Yields ("thinking"|"answer", text piece) while the answer streams, then ("done", QAResult).

        `generation` (max_tokens, temperature, top_p, stop) overrides the LLM settings for this answer.
        Setting `stop` ends generation after the current piece; the result keeps what was written.
        """
        started = time.perf_counter()
        query_type = (query_type or "AUTO").upper()
        if query_type not in QUERY_TYPES:
            raise QueryError(f"Unknown query type {query_type!r}; use AUTO, FAQ or DOCS")
        question, top_k = checked_question(question or ""), checked_top_k(top_k)
        text, inline_tags = parse_tags(question)
        all_tags = sorted(set(inline_tags) | set(tags or []))
        base = self.check(kbs, all_tags)
        notices: list[str] = []
        timings: dict[str, float] = {}

        def search(faq: bool, k: int | None = None) -> RetrievalResult:
            result = self.retriever.retrieve(text, mode=mode, top_k=k or top_k, rerank=rerank,
                                             search_filter=SearchFilter(base.kbs, base.tags, faq=faq))
            for name, seconds in result.timings.items():
                timings[name] = timings.get(name, 0.0) + seconds
            notices.extend(n for n in result.notices if n not in notices)
            return result

        faq_hits: list[Hit] = []
        if query_type in ("AUTO", "FAQ"):
            faq_hits = search(True).hits
            best = faq_hits[0] if faq_hits else None
            if query_type == "FAQ" or (best and self.faq_confidence(text, best) >= self.app.settings.faq_score_threshold):
                answer = self._faq_answer(best)
                yield "answer", answer.text
                sources = [_source(1, best)] if best else []
                yield "done", self._result(question, query_type, "faq", answer, sources, timings, notices,
                                           all_tags, started)
                return

        doc_hits = search(False).hits
        sources = [_source(i, hit) for i, hit in enumerate(doc_hits, start=1)]
        weak = [hit for hit in faq_hits[:WEAK_FAQ_PASSAGES]]
        sources += [_source(len(sources) + i, hit, low_confidence=True) for i, hit in enumerate(weak, start=1)]
        answer = None
        for kind, piece in self.answerer.answer_stream(text, [_passage(s) for s in sources],
                                                       enable_thinking=thinking, history=history,
                                                       options=generation, stop=stop):
            if kind == "done":
                answer = piece
            else:
                yield kind, piece
        assert answer is not None
        if answer.notice:
            notices.append(answer.notice)
        yield "done", self._result(question, query_type, "docs", answer, sources, timings, notices, all_tags,
                                   started)

    def ask(self, question: str, **options: Any) -> QAResult:
        for kind, value in self.ask_stream(question, **options):
            if kind == "done":
                return value
        raise AssertionError("ask_stream ended without a result")

    @staticmethod
    def _faq_answer(best: Hit | None) -> Answer:
        if best is None:
            return Answer(text=NO_FAQ_MATCH, thinking="", kind="none", citations=[], timings={}, notice="")
        text = f"{best.chunk.metadata.get('answer') or best.chunk.text} [1]"
        return Answer(text=text, thinking="", kind="faq", citations=citation_numbers(text, [1]), timings={},
                      notice="")

    @staticmethod
    def _result(question: str, query_type: str, routed: str, answer: Answer, sources: list[Source],
                timings: dict[str, float], notices: list[str], tags: list[str], started: float) -> QAResult:
        timings = {**timings, **answer.timings, "total": time.perf_counter() - started}
        return QAResult(question=question, query_type=query_type, routed_to=routed, answer=answer,
                        sources=sources, timings=timings, notices=notices, tags=tags)
