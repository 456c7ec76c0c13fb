"""A stand-in model server on 127.0.0.1 speaking the shapes AskAny's remote backends call, with faults.

OpenAI ``/v1/embeddings`` (float or base64), Jina/Cohere ``/v1/rerank``, TEI's ``/embed`` and
``/rerank``, and ``/v1/models``. Answers are instant and deterministic: a text's vector is its
characters hashed into ``dimension`` buckets (so texts sharing characters are near), a rerank score
is the share of the query's characters found in the passage. Faults are injected per request:
``faults`` is consumed one entry a request (``"429"``, ``"500"``, ``"slow"``, ``"drop"``,
``"dimension"``, ``"401"``, ``None`` for a normal answer), and ``fail_after(n, fault)`` gives every
request after the n-th that fault (a server that goes away mid-ingestion).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

POOL = 8192  # vectors made up front by an instant stand-in


def hashed_vector(text: str, dimension: int) -> np.ndarray:
    vector = np.zeros(dimension, dtype=np.float32)
    for char in text:
        vector[zlib.crc32(char.encode("utf-8")) % dimension] += 1.0
    norm = np.linalg.norm(vector)
    return vector / norm if norm else vector


def overlap_score(query: str, passage: str) -> float:
    wanted = set(query)
    return len(wanted & set(passage)) / len(wanted) if wanted else 0.0


class ModelStandIn:
    def __init__(self, dimension: int = 32, model: str = "standin-embed", slow_seconds: float = 3.0,
                 delay_seconds: float = 0.0, instant: bool = False, refuse_base64: bool = False,
                 max_batch: int | None = None):
        """``delay_seconds``: every answer takes that long (a busy GPU server); "slow" takes ``slow_seconds``.
        ``instant``: one precomputed vector for every text, so answering costs next to nothing (the
        pipeline-ceiling benchmark). ``refuse_base64``: a 400 for base64, as a floats-only server.
        ``max_batch``: TEI's 413 for more texts than that in one request (--max-client-batch-size)."""
        self.dimension, self.model = dimension, model
        self.slow_seconds, self.delay_seconds = slow_seconds, delay_seconds
        self.instant, self.refuse_base64, self.max_batch = instant, refuse_base64, max_batch
        # Instant answers: a text's vector is one of a few thousand made up front (distinct texts get
        # distinct vectors, as from a real model, so the vector index is built as for real data).
        self._ready = np.random.default_rng(0).standard_normal((POOL if instant else 0, dimension)).astype("<f4")
        self._ready /= np.maximum(np.linalg.norm(self._ready, axis=1, keepdims=True), 1e-9)
        self._ready_base64 = [json.dumps(base64.b64encode(row.tobytes()).decode()) for row in self._ready]
        self.faults: list[str | None] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._after: tuple[int, str] | None = None
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.rstrip("/") in ("/v1/models", "/models"):
                    self._send(200, {"object": "list", "data": [{"id": standin.model, "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fault = standin._next_fault(self.path, body)
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)  # no answer at all: the client sees the connection end
                    return
                time.sleep(standin.slow_seconds if fault == "slow" else standin.delay_seconds)
                if fault in ("429", "500", "401", "503"):
                    headers = {"Retry-After": "0"} if fault == "429" else {}
                    self._send(int(fault), {"error": {"message": f"injected {fault}"}}, headers)
                    return
                try:
                    answer = standin.answer(self.path, body, wrong_dimension=fault == "dimension")
                except KeyError as error:
                    self._send(400, {"error": {"message": f"missing {error}"}})
                    return
                if isinstance(answer, tuple):
                    self._send(*answer)
                elif answer is None:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                else:
                    self._send(200, answer)

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.root = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.base = self.root + "/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def fail_after(self, requests: int, fault: str) -> None:
        with self._lock:
            self._after = (len(self.requests) + requests, fault)

    def heal(self) -> None:
        with self._lock:
            self._after, self.faults = None, []

    def _next_fault(self, path: str, body: dict[str, Any]) -> str | None:
        with self._lock:
            self.requests.append((path, body))
            if self._after is not None and len(self.requests) > self._after[0]:
                return self._after[1]
            return self.faults.pop(0) if self.faults else None

    def answer(self, path: str, body: dict[str, Any], wrong_dimension: bool = False) -> Any:
        path = path.rstrip("/")
        dimension = self.dimension // 2 if wrong_dimension else self.dimension
        if path == "/v1/embeddings":
            texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
            as_base64 = body.get("encoding_format") == "base64"
            if as_base64 and self.refuse_base64:
                return 400, {"error": {"message": "encoding_format must be float"}}
            if self.max_batch is not None and len(texts) > self.max_batch:  # TEI's words and shape
                return 413, {"error": f"batch size {len(texts)} > maximum allowed batch size {self.max_batch}",
                             "error_type": "Validation"}
            if self.instant and not wrong_dimension:
                picks = [zlib.crc32(text.encode("utf-8")) % POOL for text in texts]
                vectors = [self._ready_base64[pick] if as_base64 else json.dumps(self._ready[pick].tolist())
                           for pick in picks]
                rows = ",".join(f'{{"object":"embedding","index":{i},"embedding":{vector}}}'
                                for i, vector in enumerate(vectors))
                return (f'{{"object":"list","data":[{rows}],"model":"{self.model}",'
                        f'"usage":{{"prompt_tokens":0,"total_tokens":0}}}}').encode()
            data = []
            for index, text in enumerate(texts):
                vector = hashed_vector(text, dimension)
                data.append({"object": "embedding", "index": index,
                             "embedding": base64.b64encode(vector.astype("<f4").tobytes()).decode()
                             if as_base64 else vector.tolist()})
            tokens = sum(len(text) for text in texts)
            return {"object": "list", "data": data, "model": body.get("model") or self.model,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        if path == "/embed":  # TEI
            texts = [body["inputs"]] if isinstance(body["inputs"], str) else body["inputs"]
            return [hashed_vector(text, dimension).tolist() for text in texts]
        if path == "/v1/rerank":  # Jina / Cohere
            documents = [d if isinstance(d, str) else d["text"] for d in body["documents"]]
            results = sorted(({"index": i, "relevance_score": overlap_score(body["query"], d)}
                              for i, d in enumerate(documents)), key=lambda r: -r["relevance_score"])
            return {"id": "rerank-standin", "model": body.get("model") or self.model,
                    "results": results[:body.get("top_n") or len(results)], "usage": {"total_tokens": 0}}
        if path == "/rerank":  # TEI
            return sorted(({"index": i, "score": overlap_score(body["query"], t)} for i, t in enumerate(body["texts"])),
                          key=lambda r: -r["score"])
        return None

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":  # a stand-in in a process of its own (bench/ingest.py --embedding-api standin)
    import argparse

    parser = argparse.ArgumentParser(description="an instant stand-in embedding server on 127.0.0.1")
    parser.add_argument("--dimension", type=int, default=1024)
    args = parser.parse_args()
    server = ModelStandIn(dimension=args.dimension, instant=True)
    print(server.base, flush=True)
    threading.Event().wait()
