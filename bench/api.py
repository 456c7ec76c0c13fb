"""The HTTP API under load: 16 concurrent clients for 60 s mixing embeddings, rerank and chat.

    python bench/api.py                                   # tiny models, 16 clients, 60 s
    python bench/api.py --clients 4 --seconds 10          # a quick check of the script

The server is the product itself, `python -m askany.main --serve`, in its own process on
loopback (the sample documents ingested first through the CLI). Two measurements, one run:

1. Embedding overhead: the same passages, in the same batches, encoded directly with
   `model.encode` in this process and through POST /v1/embeddings. The verdict is throughput:
   4 concurrent clients keep the server busy, overhead = API time / direct time - 1 (target: at
   most 15 %). Next to it, the latency of one request at a time and its fixed cost per request.
2. Mixed load: N client threads, each looping over embeddings (a batch of 8 passages),
   rerank (a question and 10 passages) and grounded chat (streamed and not, 8 new tokens) for
   the given seconds. Per endpoint: requests, requests/s, p50/p95 latency, errors (target: zero).

Results: stdout (table) and bench/results/api.json, with the load average.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import common

CONCURRENT_CLIENTS = 4
PASSAGES = [line.strip() for line in (common.ROOT / "ingest" / "samples" / "k8s-运维手册.md").read_text(
    encoding="utf-8").splitlines() if len(line.strip()) > 8]


def environment(data_dir: Path, models: dict[str, Path], port: int, batch_size: int = 16) -> dict[str, str]:
    return {**os.environ, "DATA_DIR": str(data_dir), "MODELS_DIR": str(data_dir / "models"),
            "EMBEDDING_MODEL": str(models["embedding"]), "RERANKER_MODEL": str(models["reranker"]),
            "LLM_MODEL": str(models["llm"]), "LLM_BACKEND": "transformers", "LLM_MAX_NEW_TOKENS": "8",
            "DEVICE": "cpu", "API_PORT": str(port), "EMBEDDING_BATCH_SIZE": str(batch_size), "HF_HUB_OFFLINE": "1",
            # torch, as the direct encode it is compared with (auto would be torch-bf16 or onnx-int8 on a CPU)
            "EMBEDDING_RUNTIME": "torch", "RERANKER_RUNTIME": "torch", "PYTHONPATH": str(common.ROOT)}


BLOCK = 10  # batches per block in the one-at-a-time comparison


def cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system) of this process, or of process `pid` (from /proc)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def embedding_overhead(base: str, model_dir: Path, batches: int, batch_size: int,
                       server_pid: int | None = None) -> dict[str, Any]:
    import httpx
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    texts = [list(itertools.islice(itertools.cycle(PASSAGES), i * batch_size, (i + 1) * batch_size))
             for i in range(batches)]

    def direct_block(block: list[list[str]]) -> float:
        started = time.perf_counter()
        for batch in block:
            model.encode(batch, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
        return time.perf_counter() - started

    def api_block(block: list[list[str]]) -> float:
        started = time.perf_counter()
        for batch in block:
            client.post(base + "/v1/embeddings", json={"input": batch, "encoding_format": "base64"}
                        ).raise_for_status()
        return time.perf_counter() - started

    with httpx.Client(timeout=120) as client:
        direct_block(texts[:1])  # warm both sides up
        api_block(texts[:1])
        # Latency, one request at a time: blocks of BLOCK batches, alternating which side goes first
        # (the load of a shared 2-core box drifts within a minute), so both sides see the same machine
        # and one side's idle torch threads touch the other only at block boundaries.
        direct = api = 0.0
        for number, first in enumerate(range(0, batches, BLOCK)):
            block = texts[first:first + BLOCK]
            if number % 2:
                api += api_block(block)
                direct += direct_block(block)
            else:
                direct += direct_block(block)
                api += api_block(block)
    passages = batches * batch_size
    # Throughput, the verdict: the same batches from CONCURRENT_CLIENTS at once, as a tool that keeps
    # the server busy sends them (HTTP work overlaps the encoder thread's), against direct encode of
    # the same batches right before and after.
    direct_before = direct_block(texts)
    queue = list(texts)
    lock = threading.Lock()

    def concurrent_client() -> None:
        with httpx.Client(timeout=120) as http:
            while True:
                with lock:
                    if not queue:
                        return
                    batch = queue.pop()
                http.post(base + "/v1/embeddings", json={"input": batch, "encoding_format": "base64"}
                          ).raise_for_status()

    started = time.perf_counter()
    cpu_started = (cpu_seconds(), cpu_seconds(server_pid) if server_pid else 0.0)
    threads = [threading.Thread(target=concurrent_client) for _ in range(CONCURRENT_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    api_concurrent = time.perf_counter() - started
    # Where the CPU went: the clients (this process) share the 2 cores with the server.
    client_cpu = cpu_seconds() - cpu_started[0]
    server_cpu = cpu_seconds(server_pid) - cpu_started[1] if server_pid else None
    cpu_started = cpu_seconds()
    direct_after = direct_block(texts)
    direct_cpu = cpu_seconds() - cpu_started
    direct_throughput = (direct_before + direct_after) / 2
    return {"passages": passages, "direct_s": round(direct, 3), "api_s": round(api, 3),
            "direct_per_s": round(passages / direct, 1), "api_per_s": round(passages / api, 1),
            "latency_overhead": round(api / direct - 1, 4),
            "fixed_ms_per_request": round((api - direct) / batches * 1000, 2),
            "throughput": {"clients": CONCURRENT_CLIENTS, "direct_s": round(direct_throughput, 3),
                           "api_s": round(api_concurrent, 3),
                           "direct_per_s": round(passages / direct_throughput, 1),
                           "api_per_s": round(passages / api_concurrent, 1)},
            "overhead": round(api_concurrent / direct_throughput - 1, 4),
            "cpu_ms_per_request": {"direct_encode": round(direct_cpu / batches * 1000, 2),
                                   "clients": round(client_cpu / batches * 1000, 2),
                                   "server": round(server_cpu / batches * 1000, 2) if server_cpu is not None else None}}


def mixed_load(base: str, clients: int, seconds: float) -> dict[str, Any]:
    import httpx

    requests: list[tuple[str, dict[str, Any], bool]] = [
        ("embeddings", {"input": PASSAGES[:8], "model": "bge-m3"}, False),
        ("rerank", {"query": "如何回滚发布？", "documents": PASSAGES[:10], "top_n": None}, False),
        ("chat", {"model": "askany@bench", "messages": [{"role": "user", "content": "如何回滚发布？"}],
                  "max_tokens": 8}, False),
        ("chat (stream)", {"model": "askany@bench", "messages": [{"role": "user", "content": "数据库怎么备份？"}],
                           "max_tokens": 8, "stream": True}, True),
    ]
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, list[str]] = defaultdict(list)
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(number: int) -> None:
        with httpx.Client(timeout=300) as http:
            for name, body, stream in itertools.islice(itertools.cycle(requests), number, None):
                if time.monotonic() >= stop_at:
                    return
                path = "/v1/rerank" if name == "rerank" else "/v1/embeddings" if name == "embeddings" \
                    else "/v1/chat/completions"
                started = time.perf_counter()
                problem = None
                try:
                    if stream:
                        with http.stream("POST", base + path, json=body) as response:
                            lines = [line for line in response.iter_lines() if line]
                            if response.status_code != 200 or lines[-1] != "data: [DONE]":
                                problem = f"{response.status_code} {lines[-3:]}"
                    else:
                        response = http.post(base + path, json=body)
                        if response.status_code != 200:
                            problem = f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as error:
                    problem = repr(error)
                elapsed = time.perf_counter() - started
                with lock:
                    (errors[name].append(problem) if problem else latencies[name].append(elapsed))

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    result = {}
    for name, _, _ in requests:
        values = latencies[name]
        result[name] = {"requests": len(values), "errors": len(errors[name]), "per_s": round(len(values) / wall, 2),
                        "p50_ms": round(common.percentile(values, 50) * 1000, 1) if values else None,
                        "p95_ms": round(common.percentile(values, 95) * 1000, 1) if values else None,
                        "first_errors": errors[name][:3]}
    return {"clients": clients, "seconds": round(wall, 1), "endpoints": result,
            "total_per_s": round(sum(len(v) for v in latencies.values()) / wall, 2),
            "errors": sum(len(e) for e in errors.values())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--embedding", default="tiny")
    parser.add_argument("--reranker", default="tiny")
    parser.add_argument("--llm", default="tiny")
    parser.add_argument("--batches", type=int, default=100, help="embedding-overhead batches")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--models-cache", type=Path, default=common.DEFAULT_MODELS_CACHE)
    parser.add_argument("--overhead-only", action="store_true",
                        help="only the embedding overhead (for real-architecture models, where load is too slow)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    models = {role: common.model_path(getattr(args, role), role, args.models_cache)
              for role in ("embedding", "reranker", "llm")}
    info = common.machine()
    with common.fresh_data_dir() as data_dir:
        port = common.free_port()
        env = environment(data_dir, models, port, args.batch_size)  # the server encodes in the same batches
        common.log("Ingesting the sample documents through the CLI ...")
        subprocess.run([sys.executable, "-m", "askany.main", "--ingest", str(common.ROOT / "ingest" / "samples"),
                        "--kb", "bench", "--no-progress"], env=env, check=True, stdout=subprocess.DEVNULL)
        server = common.start_server(env, port)
        base = f"http://127.0.0.1:{port}"
        try:
            common.log("Embedding overhead: direct model.encode vs POST /v1/embeddings ...")
            overhead = embedding_overhead(base, models["embedding"], args.batches, args.batch_size, server.pid)
            load = None
            if not args.overhead_only:
                common.log(f"Mixed load: {args.clients} clients for {args.seconds:g} s ...")
                load = mixed_load(base, args.clients, args.seconds)
        finally:
            server.terminate()
            server.wait(30)
            common.stop_server_postgres(data_dir)
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    if load is not None:
        rows = [[name, r["requests"], r["per_s"], r["p50_ms"], r["p95_ms"], r["errors"]]
                for name, r in load["endpoints"].items()]
        print(common.table(["endpoint", "requests", "req/s", "p50 ms", "p95 ms", "errors"], rows))
        print(f"\nall endpoints: {load['total_per_s']} req/s over {load['seconds']} s with {load['clients']} "
              f"clients, {load['errors']} errors  [{common.verdict(load['errors'] == 0)}: zero errors]")
    tp, cpu = overhead["throughput"], overhead["cpu_ms_per_request"]
    print(f"embeddings, {overhead['passages']} passages in batches of {args.batch_size}:\n"
          f"  throughput, {tp['clients']} concurrent clients: direct encode {tp['direct_per_s']}/s, through the API "
          f"{tp['api_per_s']}/s, overhead {overhead['overhead']:+.1%}  [{common.verdict(overhead['overhead'] <= 0.15)}: "
          f"<= 15 %]\n"
          f"  latency, one request at a time: direct {overhead['direct_per_s']}/s, through the API "
          f"{overhead['api_per_s']}/s, {overhead['latency_overhead']:+.1%} "
          f"({overhead['fixed_ms_per_request']:+.1f} ms a request: HTTP round trip, JSON, the hop to the encoder thread)\n"
          f"  CPU a request in the throughput run: server {cpu['server']} ms, clients {cpu['clients']} ms; "
          f"direct encode {cpu['direct_encode']} ms\n")
    print(f"load average: start {info['load_average_at_start']}, end {info['load_average_at_end']}")
    path = common.write_json("api.json", {"machine": info, "models": {k: str(v) for k, v in models.items()},
                                          "embedding_overhead": overhead, "mixed_load": load}, args.output)
    common.log(f"Wrote {path}")
    return 0 if (load is None or load["errors"] == 0) and overhead["overhead"] <= 0.15 else 1


if __name__ == "__main__":
    sys.exit(main())
