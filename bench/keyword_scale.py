"""Keyword search at the sizes teams have: 10k, 30k and 100k chunks, next to bm25s in the same run.

For each size: builds a corpus of Markdown files from the real Chinese text of shared/eval
(the 256 cmrc2018 documents, repeated with perturbations, said so in the output), ingests it
keyword-only through `Ingestor.run` (the CLI's path), then asks at least 200 questions through
`Retriever.retrieve(mode="keyword")`: eval questions, very short ones, very long ones and ones
made of the most common characters. It prints ingestion chunks/s (wall clock, everything
included: reading, parsing, chunking, jieba, the index, PostgreSQL) with the CPU seconds of the
ingesting process and its workers, index bytes per chunk (every keyword table, indexes and TOAST included), question
latency p50/p95/max, and the same latency for `bm25s` over exactly the same terms, with the
ratio. Then the `--eval` target: 3,000 questions on ~1,500 chunks through the CLI.

    python bench/keyword_scale.py                    # 10k, 30k, 100k: ~10 min on an idle 2-core machine
    python bench/keyword_scale.py --sizes 10000      # one size
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402  (sets the offline environment first)
    DEFAULT_DOCS,
    DEFAULT_QUERIES,
    ROOT,
    fresh_data_dir,
    log,
    machine,
    make_app,
    percentile,
    table,
    verdict,
    write_json,
)

CJK = re.compile(r"[\u4e00-\u9fff]")
TARGETS = {"p50_ms": 20.0, "p95_ms": 100.0, "max_ms": 1000.0, "bytes_per_chunk": 4096, "chunks_per_s": 1000.0}


# --------------------------------------------------------------------------- corpus


def read_sources(docs: Path) -> list[tuple[str, list[str]]]:
    """(title, paragraphs) of every eval document."""
    sources = []
    for path in sorted(docs.glob("*.md")):
        lines = path.read_text(encoding="utf-8").splitlines()
        title = lines[0].lstrip("# ").strip()
        sources.append((title, [line for line in lines[1:] if line.strip()]))
    return sources


def perturb(paragraph: str, rng: random.Random, alphabet: str, rate: float) -> str:
    """Replace a share of the CJK characters by random common ones: new bigrams, like new text has."""
    chars = list(paragraph)
    for i, char in enumerate(chars):
        if CJK.match(char) and rng.random() < rate:
            chars[i] = rng.choice(alphabet)
    return "".join(chars)


def build_corpus(folder: Path, sources: list[tuple[str, list[str]]], target_chars: int, seed: int,
                 rate: float) -> dict[str, Any]:
    """Files of ~3,000 characters: an eval document's paragraphs mixed with others', perturbed.

    Copy 0 of every document is unchanged (so eval questions have their gold text); later copies
    get `rate` of their characters replaced and a few code-like tokens, so vocabulary keeps
    growing with the corpus instead of repeating.
    """
    rng = random.Random(seed)
    text = "".join(p for _, paragraphs in sources for p in paragraphs)
    counts: dict[str, int] = {}
    for char in CJK.findall(text):
        counts[char] = counts.get(char, 0) + 1
    alphabet = "".join(sorted(counts, key=counts.get, reverse=True)[:3000])
    folder.mkdir(parents=True, exist_ok=True)
    written = files = copy = 0
    while written < target_chars:
        for index, (title, paragraphs) in enumerate(sources):
            if written >= target_chars:
                break
            body = list(paragraphs)
            if copy:
                for _ in range(max(1, len(body) // 3)):
                    other = sources[rng.randrange(len(sources))][1]
                    body.insert(rng.randrange(len(body) + 1), rng.choice(other))
                body = [perturb(p, rng, alphabet, rate) for p in body]
                body.append(f"相关编号 ERR-{rng.randrange(10000):04d}，版本 v{rng.randrange(9)}.{rng.randrange(20)}."
                            f"{rng.randrange(50)}，主机 node-{rng.randrange(500)}.k8s.local。")
            doc = f"# {title}（第 {copy} 版）\n\n" + "\n\n".join(body) + "\n"
            (folder / f"c{copy:04d}-{index:03d}.md").write_text(doc, encoding="utf-8")
            written += len(doc)
            files += 1
        copy += 1
    return {"files": files, "characters": written, "copies": copy, "perturbation_rate": rate}


# --------------------------------------------------------------------------- questions


def build_questions(sources: list[tuple[str, list[str]]], queries: Path, seed: int,
                    eval_count: int, extra: int) -> list[tuple[str, str]]:
    """(category, question): eval questions plus very short, very long and common-character ones."""
    rng = random.Random(seed)
    lines = [json.loads(line) for line in queries.read_text(encoding="utf-8").splitlines() if line.strip()]
    chosen = [("eval", item["question"]) for item in rng.sample(lines, min(eval_count, len(lines)))]
    paragraphs = [p for _, ps in sources for p in ps]
    short = ["时", "于", "中国", "k8s", "时间", "ERR-2041", "的", "v2.3.1", "部署", "游戏"]
    chosen += [("short", short[i % len(short)] if i < len(short) else rng.choice(paragraphs)[:2]) for i in range(extra)]
    longs = sorted(paragraphs, key=len, reverse=True)
    chosen += [("long", (longs[i % 40] + longs[(i + 7) % 40])[:2000]) for i in range(extra)]
    text = "".join(paragraphs)
    counts: dict[str, int] = {}
    for char in CJK.findall(text):
        counts[char] = counts.get(char, 0) + 1
    common = sorted(counts, key=counts.get, reverse=True)[:40]
    chosen += [("common", "".join(rng.sample(common, 12)) + "是什么时候的事？") for _ in range(extra)]
    return chosen


# --------------------------------------------------------------------------- measuring


def ingest(app: Any, folder: Path) -> dict[str, Any]:
    from askany.ingestion.pipeline import Ingestor

    cpu0, kids0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    report = Ingestor(app).run([folder], kb="bench", progress=False)
    seconds = time.perf_counter() - started
    cpu1, kids1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    if report.failed:
        raise SystemExit(f"{len(report.failed)} files failed: {report.failed[:3]}")
    from askany.ingestion.workers import worker_count

    return {"chunks": report.chunks_written, "files": len(report.results), "seconds": round(seconds, 2),
            "workers": worker_count(app.settings),
            "chunks_per_s": round(report.chunks_written / seconds, 1),
            "process_cpu_seconds": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
            "worker_cpu_seconds": round(kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime, 1)}


def index_size(app: Any, chunks: int) -> dict[str, Any]:
    sizes = app.store.keywords.size_bytes()
    with app.db.connection() as conn:
        segments = conn.execute("SELECT count(*) FROM keyword_segments").fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM keyword_postings").fetchone()[0]
        chunk_table = conn.execute("SELECT pg_total_relation_size('chunks')").fetchone()[0]
    total = sum(sizes.values())
    return {"tables": sizes, "total_bytes": total, "bytes_per_chunk": round(total / chunks), "segments": segments,
            "posting_rows": rows, "chunks_table_bytes_per_chunk": round(chunk_table / chunks)}


def vacuum(app: Any) -> None:
    import psycopg

    with psycopg.connect(app.db.url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE keyword_postings, keyword_segments, keyword_deleted")


def time_askany(app: Any, questions: list[tuple[str, str]]) -> tuple[list[float], list[list[int]]]:
    from askany.retrieval.retriever import QueryError, Retriever

    retriever = Retriever(app)
    latencies, results = [], []
    for _, question in questions:
        started = time.perf_counter()
        try:
            hits = retriever.retrieve(question, mode="keyword", rerank=False, top_k=app.settings.keyword_top_n).hits
        except QueryError:
            hits = []
        latencies.append(time.perf_counter() - started)
        results.append([hit.chunk.id for hit in hits])
    return latencies, results


def bm25s_baseline(app: Any, questions: list[tuple[str, str]], top_n: int) -> dict[str, Any]:
    """bm25s (method lucene, same k1/b) over exactly the terms AskAny stores and queries."""
    import bm25s
    import numpy as np

    with app.db.connection() as conn:
        rows = conn.execute("SELECT id, text FROM chunks ORDER BY id").fetchall()
    ids = np.array([row[0] for row in rows])
    started = time.perf_counter()
    corpus = app.analyzer.terms_many([row[1] for row in rows])
    analyze_seconds = time.perf_counter() - started
    retriever = bm25s.BM25(k1=app.settings.bm25_k1, b=app.settings.bm25_b, method="lucene")
    started = time.perf_counter()
    retriever.index(corpus, show_progress=False)
    index_seconds = time.perf_counter() - started
    scores = retriever.scores
    memory = sum(scores[key].nbytes for key in ("data", "indices", "indptr"))
    vocab = retriever.vocab_dict
    latencies, results = [], []
    for _, question in questions:
        began = time.perf_counter()
        terms = [t for t in dict.fromkeys(app.analyzer.terms(question[:2000]))][:256]
        known = [t for t in terms if t in vocab]
        if known:
            s = retriever.get_scores(known)
            top = np.argpartition(-s, min(top_n, len(s) - 1))[:top_n]
            top = top[s[top] > 0]
            top = top[np.lexsort((ids[top], -s[top]))]
        else:
            top = np.array([], dtype=int)
        latencies.append(time.perf_counter() - began)
        results.append(ids[top].tolist())
    return {"latencies": latencies, "results": results, "memory_bytes": int(memory),
            "index_seconds": round(index_seconds, 1), "analyze_seconds": round(analyze_seconds, 1)}


def summarize(latencies: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in latencies]
    return {"p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
            "max_ms": round(max(ms), 2), "mean_ms": round(sum(ms) / len(ms), 2)}


def run_size(size: int, sources: list, questions: list[tuple[str, str]], rate: float, seed: int,
             keep: bool) -> dict[str, Any]:
    with fresh_data_dir(keep) as data_dir:
        corpus_dir = Path(tempfile.mkdtemp(prefix="askany-bench-corpus-"))
        try:
            corpus = build_corpus(corpus_dir, sources, target_chars=int(size * 318), seed=seed, rate=rate)
            log(f"{size}: corpus of {corpus['files']} files, {corpus['characters']:,} characters "
                f"({corpus['copies']} perturbed copies of the eval documents)")
            app = make_app(data_dir, embedding_enabled=False)
            app.store.keywords.needs_rebuild()  # start the database outside the timing
            app.analyzer.terms("预热")
            ingestion = ingest(app, corpus_dir)
        finally:
            shutil.rmtree(corpus_dir, ignore_errors=True)
        log(f"{size}: ingested {ingestion['chunks']} chunks in {ingestion['seconds']} s "
            f"({ingestion['chunks_per_s']} chunks/s)")
        size_as_ingested = index_size(app, ingestion["chunks"])
        vacuum(app)
        size_vacuumed = index_size(app, ingestion["chunks"])
        cold_started = time.perf_counter()
        time_askany(app, questions[:1])
        cold = time.perf_counter() - cold_started
        askany_latencies, askany_results = time_askany(app, questions)
        baseline = bm25s_baseline(app, questions, app.settings.keyword_top_n)
        agree = [len(set(a[:10]) & set(b[:10])) / max(1, min(10, len(b))) for a, b in
                 zip(askany_results, baseline["results"], strict=True) if b]
        by_category: dict[str, dict[str, float]] = {}
        for category in dict.fromkeys(c for c, _ in questions):
            picked = [lat for (c, _), lat in zip(questions, askany_latencies, strict=True) if c == category]
            by_category[category] = summarize(picked)
        result = {
            "size": size, "corpus": corpus, "ingestion": ingestion,
            "index_as_ingested": size_as_ingested, "index_after_vacuum": size_vacuumed,
            "askany": summarize(askany_latencies), "askany_by_category": by_category,
            "first_question_in_process_ms": round(cold * 1000, 1),
            "bm25s": {**summarize(baseline["latencies"]), "memory_bytes": baseline["memory_bytes"],
                      "memory_bytes_per_chunk": round(baseline["memory_bytes"] / ingestion["chunks"]),
                      "index_seconds": baseline["index_seconds"]},
            "top10_agreement_with_bm25s": round(sum(agree) / max(1, len(agree)), 4),
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }
        result["ratio_p50"] = round(result["askany"]["p50_ms"] / max(result["bm25s"]["p50_ms"], 1e-6), 2)
        result["ratio_p95"] = round(result["askany"]["p95_ms"] / max(result["bm25s"]["p95_ms"], 1e-6), 2)
        return result


def eval_target(sources: list, seed: int, rate: float) -> dict[str, Any]:
    """`--eval` of 3,000 questions on ~1,500 chunks, keyword mode, through the CLI in a new process."""
    lines = [line for line in DEFAULT_QUERIES.read_text(encoding="utf-8").splitlines() if line.strip()]
    with fresh_data_dir() as data_dir:
        work = Path(tempfile.mkdtemp(prefix="askany-bench-eval-"))
        try:
            build_corpus(work / "docs", sources, target_chars=int(1500 * 318), seed=seed, rate=rate)
            queries = work / "queries.jsonl"
            with queries.open("w", encoding="utf-8") as out:
                for i in range(3000):
                    item = json.loads(lines[i % len(lines)])
                    item["id"] = f"{item['id']}-{i}"
                    item["doc_id"] = f"c0000-{int(item['doc_id'].rsplit('-', 1)[1]):03d}"
                    out.write(json.dumps(item, ensure_ascii=False) + "\n")
            env = {**os.environ, "DATA_DIR": str(data_dir), "EMBEDDING_ENABLED": "false", "LLM_BACKEND": "none",
                   "RERANKER_ENABLED": "false", "ASKANY_ENV_FILE": "/nonexistent/askany-bench.env"}
            command = [sys.executable, "-m", "askany.main", "--ingest", str(work / "docs"), "--kb", "evalset",
                       "--no-progress", "--json"]
            ingested = json.loads(subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True,
                                                 check=True).stdout)
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "askany.main", "--eval", str(queries), "--kb", "evalset",
                                   "--json", "--no-progress"], env=env, cwd=ROOT, capture_output=True, text=True,
                                  check=True)
            seconds = time.perf_counter() - started
        finally:
            shutil.rmtree(work, ignore_errors=True)
        keyword = next(row for row in json.loads(done.stdout)["setups"] if row["setup"] == "keyword")
        return {"chunks": ingested["chunks_written"], "questions": 3000, "wall_seconds": round(seconds, 1),
                "keyword_setup_seconds": keyword["seconds"], "hit1": keyword["hit1"], "mrr": keyword["mrr"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,30000,100000", help="comma-separated chunk counts")
    parser.add_argument("--eval-questions", type=int, default=200, help="eval questions per size (plus 3 x --extra)")
    parser.add_argument("--extra", type=int, default=20, help="very short, very long and common-character questions each")
    parser.add_argument("--perturbation", type=float, default=0.03, help="share of characters replaced in copies")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-eval-target", action="store_true", help="skip the 3,000-question --eval run")
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    info = machine()
    log(f"Load average at start: {info['load_average_at_start']}")
    sources = read_sources(DEFAULT_DOCS)
    questions = build_questions(sources, DEFAULT_QUERIES, args.seed, args.eval_questions, args.extra)
    print(f"Corpora: the {len(sources)} documents of {DEFAULT_DOCS.parent.name}, repeated; copies after the first "
          f"mix in paragraphs of other documents and have {args.perturbation:.0%} of their characters replaced.")
    print(f"Questions per size: {len(questions)} ({args.eval_questions} eval, {args.extra} each very short, "
          f"very long and common-character)")
    results = [run_size(int(size), sources, questions, args.perturbation, args.seed, args.keep_data)
               for size in args.sizes.split(",")]
    rows = []
    for r in results:
        rows.append([r["ingestion"]["chunks"], r["ingestion"]["chunks_per_s"],
                     r["index_as_ingested"]["bytes_per_chunk"], r["index_after_vacuum"]["bytes_per_chunk"],
                     r["askany"]["p50_ms"], r["askany"]["p95_ms"], r["askany"]["max_ms"],
                     r["bm25s"]["p50_ms"], r["bm25s"]["p95_ms"], r["ratio_p50"], r["ratio_p95"],
                     r["bm25s"]["memory_bytes_per_chunk"], r["top10_agreement_with_bm25s"]])
    print()
    print(table(["chunks", "ingest/s", "B/chunk", "B/chunk vacuumed", "p50 ms", "p95 ms",
                 "max ms", "bm25s p50", "bm25s p95", "ratio p50", "ratio p95", "bm25s B/chunk", "top10 agree"], rows))
    for r in results:
        print(f"\n{r['ingestion']['chunks']} chunks, by question kind (AskAny keyword mode through Retriever):")
        print(table(["kind", "p50 ms", "p95 ms", "max ms"],
                    [[k, v["p50_ms"], v["p95_ms"], v["max_ms"]] for k, v in r["askany_by_category"].items()]))
        ing = r["ingestion"]
        print(f"ingestion: {ing['seconds']} s with {ing['workers']} worker processes; CPU {ing['process_cpu_seconds']} s "
              f"in the ingesting process + {ing['worker_cpu_seconds']} s in workers (PostgreSQL not counted)")
        print(f"first question in a new process: {r['first_question_in_process_ms']} ms; segments "
              f"{r['index_after_vacuum']['segments']}, posting rows {r['index_after_vacuum']['posting_rows']:,}; "
              f"load average after: {r['load_average_after']}")
    largest = results[-1]
    checks = {
        "p50": largest["askany"]["p50_ms"] <= TARGETS["p50_ms"],
        "p95": largest["askany"]["p95_ms"] <= TARGETS["p95_ms"],
        "max": largest["askany"]["max_ms"] <= TARGETS["max_ms"],
        "index": largest["index_after_vacuum"]["bytes_per_chunk"] <= TARGETS["bytes_per_chunk"],
        "ingestion": largest["ingestion"]["chunks_per_s"] >= TARGETS["chunks_per_s"],
    }
    print(f"\nAt {largest['ingestion']['chunks']} chunks: p50 ≤ 20 ms {verdict(checks['p50'])}, p95 ≤ 100 ms "
          f"{verdict(checks['p95'])}, none over 1 s {verdict(checks['max'])}, index ≤ 4 KB/chunk "
          f"{verdict(checks['index'])}, ingestion ≥ 1,000 chunks/s {verdict(checks['ingestion'])}")
    evaluation = None
    if not args.no_eval_target:
        evaluation = eval_target(sources, args.seed, args.perturbation)
        print(f"--eval of {evaluation['questions']} questions on {evaluation['chunks']} chunks (keyword, new process): "
              f"{evaluation['wall_seconds']} s wall, keyword setup {evaluation['keyword_setup_seconds']} s; "
              f"hit@1 {evaluation['hit1']}, MRR {evaluation['mrr']} — under a minute "
              f"{verdict(evaluation['wall_seconds'] < 60)}")
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"Load average: start {info['load_average_at_start']}, end {info['load_average_at_end']}")
    path = write_json("keyword_scale.json", {"machine": info, "sizes": results, "eval_target": evaluation,
                                             "checks": checks}, args.output)
    log(f"Results written to {path}")


if __name__ == "__main__":
    main()
