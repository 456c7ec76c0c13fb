"""Query latency: p50/p95 per stage over eval questions, with random-weight models of the real architectures.

    python bench/query.py                       # bge-m3 + bge-reranker-v2-m3 + Qwen3-0.6B, ~10 min
    python bench/query.py --no-llm              # retrieval only
    python bench/query.py --embedding tiny --reranker tiny --llm tiny --questions 3   # seconds, checks the script

Ingests a subset of the eval documents into a fresh data folder, loads all models
warms every stage up with a short call each (not counted), then asks N eval questions whose
gold document was ingested, through `QA.ask` exactly as the CLI does (query type
AUTO, hybrid retrieval, rerank, local transformers generation). Per stage:
embed, keyword, vector, rerank, generate, first_token, total, plus two derived ones:
"outside model compute" = total - (embed + rerank + generate) (database, jieba,
fusion, prompt building, everything that is not a model call) and "wait for first
text" = total - generate + first_token (what a streaming user waits before the answer
starts). Results: stdout (table) and bench/results/query.json.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import common

STAGES = ["embed", "keyword", "vector", "rerank", "generate", "first_token", "total"]
MODEL_STAGES = ("embed", "rerank", "generate")
DEFAULT_DOCS = 20
DEFAULT_QUESTIONS = 10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=Path, default=common.DEFAULT_DOCS, help="folder of documents to ingest")
    parser.add_argument("--limit", type=int, default=DEFAULT_DOCS,
                        help=f"ingest the first N files by name, 0 for all (default {DEFAULT_DOCS})")
    parser.add_argument("--queries", type=Path, default=common.DEFAULT_QUERIES, help="queries.jsonl")
    parser.add_argument("--questions", type=int, default=DEFAULT_QUESTIONS,
                        help=f"questions to time (default {DEFAULT_QUESTIONS})")
    parser.add_argument("--max-new-tokens", type=int, default=32,
                        help="LLM_MAX_NEW_TOKENS (default 32: random fp32 generation on CPU is slow)")
    parser.add_argument("--no-llm", action="store_true", help="retrieval only (LLM_BACKEND=none)")
    parser.add_argument("--rerank-top-n", type=int, default=None, help="RERANK_TOP_N (default: settings, 10)")
    parser.add_argument("--top-k", type=int, default=None, help="TOP_K passages given to the LLM (default: settings)")
    parser.add_argument("--query-type", default="AUTO", choices=["AUTO", "DOCS"],
                        help="AUTO (default, what the CLI does: FAQ search first) or DOCS")
    parser.add_argument("--embedding", default="bge-m3-random", help="model folder, bge-m3-random (default) or tiny")
    parser.add_argument("--reranker", default="bge-reranker-v2-m3-random",
                        help="model folder, bge-reranker-v2-m3-random (default) or tiny")
    parser.add_argument("--llm", default="qwen3-0.6b-random", help="model folder, qwen3-0.6b-random (default) or tiny")
    parser.add_argument("--models-cache", type=Path, default=common.DEFAULT_MODELS_CACHE,
                        help="where random-weight models are built once and reused")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data folder")
    parser.add_argument("--output", type=Path, default=None, help="JSON output (default bench/results/query.json)")
    return parser.parse_args()


def pick_questions(queries: list[Any], doc_ids: set[str], n: int) -> list[Any]:
    """Questions about the ingested documents, round-robin over documents so many topics are covered."""
    by_doc: dict[str, list[Any]] = defaultdict(list)
    for query in queries:
        if query.doc_id in doc_ids:
            by_doc[query.doc_id].append(query)
    picked: list[Any] = []
    depth = 0
    while len(picked) < n and any(len(items) > depth for items in by_doc.values()):
        for doc_id in sorted(by_doc):
            if len(by_doc[doc_id]) > depth and len(picked) < n:
                picked.append(by_doc[doc_id][depth])
        depth += 1
    return picked


def warm_up(app: Any, qa: Any, with_llm: bool) -> dict[str, float]:
    """One short call through each stage, so no timed question pays first-call costs."""
    from askany.generation import Passage

    costs = {}
    started = time.perf_counter()
    qa.retriever.retrieve("预热：系统怎么检索资料？", rerank=False)  # database, jieba, query embedding
    costs["retrieval"] = time.perf_counter() - started
    started = time.perf_counter()
    app.models.reranker().predict([("预热问题", "预热用的一段资料。")], show_progress_bar=False)
    costs["rerank"] = time.perf_counter() - started
    if with_llm:
        started = time.perf_counter()
        qa.answerer.answer("预热问题？", [Passage(number=1, text="预热用的一段资料。", source="warm-up", title="")])
        costs["generate"] = time.perf_counter() - started
    return costs


class InputSizes:
    """How much each model call got: rerank pairs and their tokens, the LLM prompt's tokens, and the
    LLM's forward passes: the first one is the prompt prefill, each later one decodes a token.

    Prefill is timed here because `first_token` is the first *visible* text: a random-weight Qwen3
    mostly samples ids the small bench tokenizer decodes to nothing, so its first visible text can
    come late, or never (then first_token = generate); a real model shows text right after prefill.
    """

    def __init__(self, app: Any, qa: Any, with_llm: bool):
        self.reset()
        reranker = app.models.reranker()
        predict = reranker.predict

        def sized_predict(pairs: Any, *args: Any, **kwargs: Any) -> Any:
            pairs = list(pairs)
            self.pairs += len(pairs)
            encoded = reranker.tokenizer([q for q, _ in pairs], [t for _, t in pairs], truncation=True,
                                         max_length=app.settings.rerank_max_length)
            self.pair_tokens += sum(len(ids) for ids in encoded["input_ids"])
            return predict(pairs, *args, **kwargs)

        reranker.predict = sized_predict  # the call-counting wrapper goes around this one
        if with_llm:
            generator = qa.answerer.generator()
            render = generator.render_prompt

            def sized_render(*args: Any, **kwargs: Any) -> str:
                prompt = render(*args, **kwargs)
                self.prompt_tokens += generator.count_tokens(prompt)
                return prompt

            generator.render_prompt = sized_render
            model = app.models.llm().model
            model.register_forward_pre_hook(self._forward_starts)
            model.register_forward_hook(self._forward_ends)

    def _forward_starts(self, module: Any, args: Any) -> None:
        self._forward_started = time.perf_counter()

    def _forward_ends(self, module: Any, args: Any, output: Any) -> None:
        if self.forwards == 0:
            self.prefill = time.perf_counter() - self._forward_started
        self.forwards += 1

    def reset(self) -> None:
        self.pairs = self.pair_tokens = self.prompt_tokens = self.forwards = 0
        self.prefill = self._forward_started = 0.0


def derived(timings: dict[str, float]) -> dict[str, float]:
    """Per-question figures: the stages (0 when a stage did not run) and the derived ones."""
    row = {stage: timings.get(stage, 0.0) for stage in STAGES}
    model = sum(row[stage] for stage in MODEL_STAGES)
    row["outside_model"] = row["total"] - model
    row["outside_share"] = row["outside_model"] / row["total"] if row["total"] else 0.0
    row["wait_first_text"] = row["total"] - row["generate"] + row["first_token"] if row["generate"] else row["total"]
    return row


def main() -> None:
    args = parse_args()
    cache = args.models_cache
    embedding = common.model_path(args.embedding, "embedding", cache)
    reranker = common.model_path(args.reranker, "reranker", cache)
    llm = None if args.no_llm else common.model_path(args.llm, "llm", cache)
    files = common.select_docs(args.docs, args.limit)
    machine = common.machine()

    from askany.ingestion.pipeline import Ingestor
    from askany.retrieval.evaluation import read_queries
    from askany.service.qa import QA

    doc_ids = {file.stem for file in files}
    questions = pick_questions(read_queries(args.queries), doc_ids, args.questions)
    if not questions:
        raise SystemExit(f"No question in {args.queries} is about the {len(files)} ingested files")

    overrides: dict[str, Any] = {
        "embedding_model": str(embedding), "reranker_model": str(reranker),
        "llm_backend": "none" if args.no_llm else "transformers",
        "llm_max_new_tokens": args.max_new_tokens,
    }
    if llm is not None:
        overrides["llm_model"] = str(llm)
    if args.rerank_top_n:
        overrides["rerank_top_n"] = args.rerank_top_n
    if args.top_k:
        overrides["top_k"] = args.top_k

    with common.fresh_data_dir(args.keep_data) as data_dir:
        app = common.make_app(data_dir, **overrides)
        settings = app.settings
        loads: dict[str, float] = {}
        for role in ("embedding", "reranker", *(() if args.no_llm else ("llm",))):
            started = time.perf_counter()
            app.models.get(role)
            loads[role] = time.perf_counter() - started
        common.log("Loaded models: " + ", ".join(f"{k} {v:.1f} s" for k, v in loads.items()))

        common.log(f"Ingesting {len(files)} files from {args.docs} ...")
        started = time.perf_counter()
        report = Ingestor(app).run(files, kb="bench", progress=False)
        ingest_seconds = time.perf_counter() - started
        common.log(f"Ingested {report.chunks_written} chunks in {ingest_seconds:.0f} s")

        qa = QA(app)
        # Count model calls per question (the AUTO route runs retrieval twice: FAQ, then documents).
        calls = common.PhaseTimer()
        calls.wrap(app.models.embedding(), "encode", "embedding encode")
        calls.wrap(app.models.reranker(), "predict", "reranker predict")
        sizes = InputSizes(app, qa, with_llm=not args.no_llm)

        def ask(question: str) -> Any:
            return qa.ask(question, query_type=args.query_type)

        warmup = warm_up(app, qa, with_llm=not args.no_llm)
        common.log("Warm-up: " + ", ".join(f"{k} {v:.1f} s" for k, v in warmup.items()))
        calls.seconds.clear()
        calls.calls.clear()

        rows, records = [], []
        for number, query in enumerate(questions, start=1):
            sizes.reset()
            result = ask(query.question)
            row = derived(result.timings)
            row["prefill"] = sizes.prefill
            row["wait_prefill"] = row["total"] - row["generate"] + row["prefill"] if row["prefill"] else row["total"]
            rows.append(row)
            sources = [Path(source.source).stem for source in result.sources]
            records.append({
                "id": query.id, "question": query.question, "gold_doc": query.doc_id,
                "gold_rank": sources.index(query.doc_id) + 1 if query.doc_id in sources else None,
                "routed_to": result.routed_to, "answer_kind": result.answer.kind,
                "answer_chars": len(result.answer.text), "notices": result.notices,
                "timings": {k: round(v, 4) for k, v in result.timings.items()},
                "rerank_pairs": sizes.pairs, "rerank_pair_tokens": sizes.pair_tokens,
                "prompt_tokens": sizes.prompt_tokens, "prefill": round(sizes.prefill, 4),
                "generated_tokens": sizes.forwards,
            })
            common.log(f"{number}/{len(questions)} total {row['total']:.1f} s (rerank {row['rerank']:.1f}, "
                       f"generate {row['generate']:.1f}, outside {row['outside_model']:.2f}) {query.question}")
        chunks = app.store.count_chunks()
        encode_calls, predict_calls = calls.calls.get("embedding encode", 0), calls.calls.get("reranker predict", 0)
        calls.restore()

    names = [*STAGES, "prefill", "outside_model", "wait_first_text", "wait_prefill"]
    summary = {name: {"p50": common.percentile([r[name] for r in rows], 50),
                      "p95": common.percentile([r[name] for r in rows], 95),
                      "mean": sum(r[name] for r in rows) / len(rows)} for name in names}
    share = [r["outside_share"] for r in rows]
    mean_of = lambda key: sum(q[key] for q in records) / len(records)  # noqa: E731
    machine = {**machine, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    result = {
        "machine": machine,
        "models": {"embedding": str(embedding), "reranker": str(reranker), "llm": str(llm) if llm else None},
        "settings": {"llm_backend": settings.llm_backend, "llm_max_new_tokens": settings.llm_max_new_tokens,
                     "rerank_top_n": settings.rerank_top_n, "top_k": settings.top_k,
                     "keyword_top_n": settings.keyword_top_n, "vector_top_n": settings.vector_top_n,
                     "query_type": args.query_type, "device": settings.device},
        "docs": str(args.docs), "files": len(files), "chunks": chunks,
        "ingest_seconds": round(ingest_seconds, 2), "load_seconds": {k: round(v, 2) for k, v in loads.items()},
        "warmup_seconds": {k: round(v, 2) for k, v in warmup.items()},
        "questions": len(rows),
        "embedding_encode_calls_per_question": encode_calls / len(rows),
        "rerank_pairs_per_question": mean_of("rerank_pairs"),
        "rerank_tokens_per_question": mean_of("rerank_pair_tokens"),
        "prompt_tokens_per_question": mean_of("prompt_tokens"),
        "generated_tokens_per_question": mean_of("generated_tokens"),
        "reranker_predict_calls_per_question": predict_calls / len(rows),
        "stages": {name: {k: round(v, 4) for k, v in values.items()} for name, values in summary.items()},
        "outside_share": {"p50": round(common.percentile(share, 50), 4), "p95": round(common.percentile(share, 95), 4),
                          "of_summed_totals": round(sum(r["outside_model"] for r in rows)
                                                    / sum(r["total"] for r in rows), 4)},
        "per_question": records,
    }
    print_report(result)
    path = common.write_json("query.json", result, args.output)
    common.log(f"Wrote {path}")


LABELS = {
    "embed": "embed question",
    "keyword": "keyword search (jieba + BM25 segments)",
    "vector": "vector search (pgvector HNSW)",
    "rerank": "rerank (cross encoder)",
    "generate": "generate (prompt + LLM)",
    "first_token": "  of which: first visible text",
    "prefill": "  of which: prompt prefill",
    "total": "total (what the user waits for)",
    "outside_model": "outside model compute",
    "wait_first_text": "wait until the answer starts",
    "wait_prefill": "  same, if text came right after prefill",
}


def print_report(r: dict[str, Any]) -> None:
    m, s = r["machine"], r["settings"]
    print(f"\nQuery benchmark  {m['date']}  {m['cpu']}  {m['cores']} cores, torch threads {m['torch_threads']}, "
          f"load avg {m['load_average_at_start'][0]} at start, {m['load_average_at_end'][0]} at end")
    for role, path in r["models"].items():
        print(f"  {role}: {path}")
    print(f"{r['files']} files, {r['chunks']} chunks; {r['questions']} questions; "
          f"query type {s['query_type']}, rerank top {s['rerank_top_n']}, top_k {s['top_k']}, "
          f"LLM {s['llm_backend']} max_new_tokens {s['llm_max_new_tokens']}")
    print(f"model calls per question: embedding encode {r['embedding_encode_calls_per_question']:g}, "
          f"reranker predict {r['reranker_predict_calls_per_question']:g}; mean input sizes: rerank "
          f"{r['rerank_pairs_per_question']:g} pairs, {r['rerank_tokens_per_question']:.0f} tokens; "
          f"LLM prompt {r['prompt_tokens_per_question']:.0f} tokens (bench tokenizers: ~1 token per hanzi), "
          f"{r['generated_tokens_per_question']:g} tokens generated\n")
    total = r["stages"]["total"]["mean"]
    rows = []
    for name, label in LABELS.items():
        values = r["stages"][name]
        share = f"{100 * values['mean'] / total:.1f} %" if total and not label.startswith(" ") else ""
        rows.append([label, values["p50"], values["p95"], values["mean"], share])
    print(common.table(["stage (seconds)", "p50", "p95", "mean", "of total"], rows))
    o = r["outside_share"]
    print(f"\noutside model compute = total - (embed + rerank + generate): per question p50 {100 * o['p50']:.2f} %, "
          f"p95 {100 * o['p95']:.2f} %; over all questions {100 * o['of_summed_totals']:.2f} % of the time")
    print(f"(p95 of {r['questions']} questions is interpolated between the slowest ones; one-time: model loads "
          + ", ".join(f"{k} {v:.1f} s" for k, v in r["load_seconds"].items())
          + "; warm-up " + ", ".join(f"{k} {v:.1f} s" for k, v in r["warmup_seconds"].items()) + ")")


if __name__ == "__main__":
    main()
