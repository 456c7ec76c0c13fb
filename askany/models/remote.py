"""Models on a server: the embedding and reranker roles over HTTP, with the local models' interface.

A team that outgrows one CPU puts the models on a GPU box behind a standard protocol (Hugging
Face TEI, vLLM, Xinference, Infinity, or another AskAny ``--serve``). ``RemoteEmbedder`` speaks
the OpenAI ``/v1/embeddings`` shape and ``RemoteReranker`` the Jina/Cohere ``/v1/rerank`` shape or
TEI's ``/rerank``; both answer the calls AskAny makes of a SentenceTransformer or a CrossEncoder
(``encode``, ``predict``, ``get_embedding_dimension``), so ingestion, retrieval and the HTTP API
use them unchanged.

Every request goes to the one configured base URL and follows one rule (`ApiClient.post`, which
the LLM backend's retries mirror): 429, 5xx, timeouts and dropped connections are tried again
``<ROLE>_API_RETRIES`` times with exponential backoff (or the server's Retry-After); any other
answer, and the last failure, becomes one ModelUnavailableError sentence naming the setting to
fix. Nothing is contacted until the first call, so a server that is down costs nothing at start.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

import httpx
import numpy as np

from askany.core.config import Settings
from askany.core.errors import AskAnyError, ModelUnavailableError
from askany.core.tally import ThreadTally

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
BACKOFF_SECONDS = 0.5  # doubled after each failed try (read on each call: tests shorten it)
MAX_BACKOFF_SECONDS = 8.0
MAX_RETRY_AFTER_SECONDS = 30.0
PROBE_TIMEOUT_SECONDS = 5.0  # --check asks each server once, without retries
_ROLE_WORDS = {"embedding": "embedding", "reranker": "reranker", "llm": "LLM"}


@dataclass(frozen=True)
class Endpoint:
    """Where one role's server is and how to talk to it, read from the role's ``<ROLE>_API_*`` settings."""

    role: str  # "embedding", "reranker", "llm"
    base: str  # e.g. http://gpu-box:9100/v1
    key: str
    model: str  # the name sent in requests
    timeout: float
    retries: int
    concurrency: int

    @classmethod
    def of(cls, settings: Settings, role: str) -> Endpoint:
        def value(name: str) -> Any:
            return getattr(settings, f"{role}_api_{name}")

        model = {"embedding": settings.embedding_model_name, "reranker": settings.reranker_model_name,
                 "llm": settings.llm_api_model or settings.llm_model}[role]
        return cls(role, value("base").rstrip("/"), value("key"), model, value("timeout_seconds"),
                   value("retries"), getattr(settings, f"{role}_api_concurrency", 1))

    @property
    def setting(self) -> str:
        return f"{self.role.upper()}_API_BASE"

    def describe(self) -> str:
        return f"The {_ROLE_WORDS[self.role]} server at {self.setting}={self.base}"


class ServerRefused(ModelUnavailableError):
    """A 4xx answer other than 408/429: asking again will not help (``status`` says which)."""

    def __init__(self, role: str, message: str, status: int):
        super().__init__(role, message)
        self.status = status


class ApiClient:
    """JSON over HTTP to one endpoint, with the retry rule and the one-sentence errors."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        # No Authorization header without a key: servers started without one expect none.
        headers = {"Authorization": f"Bearer {endpoint.key}"} if endpoint.key else {}
        self.http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(endpoint.timeout, connect=min(endpoint.timeout, 10.0)),
            limits=httpx.Limits(max_connections=endpoint.concurrency + 2,
                                max_keepalive_connections=endpoint.concurrency + 2))

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """The decoded JSON answer to ``body`` POSTed at ``base + path``."""
        return self._request("POST", path, body)

    def get(self, path: str) -> Any:
        return self._request("GET", path, None)

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        endpoint = self.endpoint
        tries = 1 + endpoint.retries
        url = endpoint.base + path
        failure = ""
        for attempt in range(1, tries + 1):
            delay = min(BACKOFF_SECONDS * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
            try:
                response = self.http.request(method, url, json=body)
            except httpx.TimeoutException:
                failure = f"did not answer within {endpoint.timeout:g} s ({endpoint.role.upper()}_API_TIMEOUT_SECONDS)"
            except httpx.TransportError as error:  # refused, reset, dropped mid-answer, bad address
                failure = f"cannot be reached ({type(error).__name__}: {_short(error)})"
            else:
                if response.status_code == 200:
                    return self._json(response)
                if response.status_code not in RETRY_STATUSES:
                    raise self._refused(response)
                failure = f"answered HTTP {response.status_code} ({_detail(response)})"
                delay = _retry_after(response, delay)
            if attempt < tries:
                log.warning("%s %s; trying again in %.1f s (%d of %d)", endpoint.describe(), failure, delay,
                            attempt + 1, tries)
                time.sleep(delay)
        times = f" ({tries} tries)" if tries > 1 else ""
        raise ModelUnavailableError(endpoint.role, f"{endpoint.describe()} {failure}{times}; check that it is "
                                                   f"running and that {endpoint.setting} is its address")

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise self.malformed(f"an answer that is not JSON ({_detail(response)})") from None

    def malformed(self, what: str) -> ModelUnavailableError:
        endpoint = self.endpoint
        return ModelUnavailableError(endpoint.role, f"{endpoint.describe()} sent {what}; check that "
                                                    f"{endpoint.setting} points at the right kind of server")

    def _refused(self, response: httpx.Response) -> ServerRefused:
        endpoint, status = self.endpoint, response.status_code
        prefix = endpoint.role.upper()
        if status in (401, 403):
            fix = f"set {prefix}_API_KEY to a key the server accepts"
        elif status == 404:
            fix = (f"check that {endpoint.setting} ends with the API prefix the server uses (usually /v1; "
                   f"TEI's /rerank has none) and that {prefix}_API_MODEL names a model it serves")
        elif status == 413:
            smaller = {"embedding": "EMBEDDING_BATCH_SIZE or CHUNK_SIZE",
                       "reranker": "RERANK_TOP_N or RERANK_MAX_LENGTH"}.get(endpoint.role, "the request")
            fix = ("the request is larger than the server takes: raise its limits (TEI: --max-client-batch-size, "
                   f"--payload-limit) or lower {smaller}")
        else:
            fix = f"check that {prefix}_API_MODEL={endpoint.model} names a model the server serves"
        return ServerRefused(endpoint.role, f"{endpoint.describe()} answered HTTP {status} ({_detail(response)}); "
                                            f"{fix}", status)


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return default
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _detail(response: httpx.Response) -> str:
    """What the server said, short: an OpenAI-shaped error's message, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else error or body.get("message") \
            or body.get("detail")
        if message:
            return _short(message)
    return _short(response.text) or "empty body"


def _short(value: object, limit: int = 200) -> str:
    return " ".join(str(value).split())[:limit]


class _Parallel:
    """Runs one call per batch, up to ``concurrency`` at a time, so a GPU server stays busy.

    The threads are daemons, unlike a ThreadPoolExecutor's: on Ctrl-C the process ends at once
    instead of joining requests still waiting for a slow server (up to the timeout)."""

    def __init__(self, client: ApiClient):
        self._size = client.endpoint.concurrency
        self._name = f"askany-{client.endpoint.role}-api"
        self._queue: queue.SimpleQueue[tuple[Future, Callable[[Any], Any], Any]] = queue.SimpleQueue()
        self._started = 0
        self._lock = threading.Lock()

    def map(self, work: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        if self._size <= 1 or len(items) <= 1:
            return [work(item) for item in items]
        self._start_threads()
        futures: list[Future] = []
        for item in items:
            future: Future = Future()
            futures.append(future)
            self._queue.put((future, work, item))
        try:
            return [future.result() for future in futures]
        finally:
            for future in futures:
                future.cancel()  # those not started yet, after a failure or an interrupt

    def _start_threads(self) -> None:
        with self._lock:
            for number in range(self._started, self._size):
                threading.Thread(target=self._serve, name=f"{self._name}-{number}", daemon=True).start()
            self._started = self._size

    def _serve(self) -> None:
        while True:
            future, work, item = self._queue.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(work(item))
            except BaseException as error:  # noqa: BLE001 - handed to the caller, which raises it
                future.set_exception(error)


# ---------------------------------------------------------------- embeddings

class RemoteEmbedder:
    """Vectors from an OpenAI-compatible ``/embeddings``: batches of ``batch_size`` texts, several in
    flight; normalized here, whatever the server does; the dimension is the first answer's.

    Vectors are asked for in base64 (little-endian float32, as the openai SDK does): decoding 16
    vectors of 1,024 floats from JSON numbers costs ~9 ms of this process's CPU, from base64 ~0.6 ms.
    A server that refuses base64 is asked for floats from then on; one that ignores it sends floats,
    which are read as well."""

    remote = True  # ingestion asks for the next group's vectors while it writes this one

    def __init__(self, settings: Settings, client: ApiClient | None = None):
        self.client = client or ApiClient(Endpoint.of(settings, "embedding"))
        self.endpoint = self.client.endpoint
        self._parallel = _Parallel(self.client)
        self._dimension: int | None = None
        self._lock = threading.Lock()
        self._tokens = ThreadTally()
        self._encoding = "base64"
        self._most_per_request: int | None = None  # learnt from a 413: the server's batch limit

    def get_embedding_dimension(self) -> int:
        if self._dimension is None:
            self.encode(["dimension"])
        assert self._dimension is not None
        return self._dimension

    def encode(self, texts: str | Sequence[str], batch_size: int = 16, normalize_embeddings: bool = True,
               convert_to_numpy: bool = True, show_progress_bar: bool = False, **_ignored: Any) -> np.ndarray:
        """Like SentenceTransformer.encode: one float32 row per text (a single vector for a string)."""
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        if not items:
            return np.zeros((0, self._dimension or 0), dtype=np.float32)
        size = min(batch_size, self._most_per_request or batch_size)
        batches = [items[start:start + size] for start in range(0, len(items), size)]
        answers = self._parallel.map(self._embed_batch, batches)
        vectors = np.vstack([vectors for vectors, _ in answers])
        if normalize_embeddings:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.where(norms > 0, norms, 1.0)
        self._tokens.add(sum(tokens for _, tokens in answers))
        return vectors[0] if single else vectors

    def _embed_batch(self, texts: list[str]) -> tuple[np.ndarray, int]:
        if self._most_per_request is not None and len(texts) > self._most_per_request:
            return self._embed_in_parts(texts, self._most_per_request)
        encoding = self._encoding
        try:
            answer = self.client.post("/embeddings", {"model": self.endpoint.model, "input": texts,
                                                      "encoding_format": encoding})
        except ServerRefused as error:
            if error.status == 413 and len(texts) > 1:
                return self._embed_smaller(texts)
            if encoding != "base64" or error.status not in (400, 422):
                raise
            self._encoding = "float"  # the server does not do base64
            log.info("%s refused base64 vectors; asking for floats", self.endpoint.describe())
            return self._embed_batch(texts)
        try:
            rows = sorted(answer["data"], key=lambda row: row["index"])
            vectors = np.array([_vector(row["embedding"]) for row in rows], dtype=np.float32)
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as error:
            raise self.client.malformed(f"something that is not an embeddings answer ({_short(error)})") from None
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise self.client.malformed(f"{len(rows)} vectors for {len(texts)} texts")
        self._check_dimension(vectors.shape[1])
        usage = answer.get("usage") if isinstance(answer, dict) else None
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        return vectors, tokens if isinstance(tokens, int) else 0

    def _embed_smaller(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """A 413 for a batch: the server takes fewer texts a request (TEI's --max-client-batch-size is
        32 by default). Sent in halves, and at most that many a request from then on."""
        with self._lock:
            if self._most_per_request is None or self._most_per_request >= len(texts):
                self._most_per_request = (len(texts) + 1) // 2
                log.warning("%s refused %d texts in one request (HTTP 413): sending at most %d from now on "
                            "(EMBEDDING_BATCH_SIZE=%d starts there)", self.endpoint.describe(), len(texts),
                            self._most_per_request, self._most_per_request)
            most = self._most_per_request
        return self._embed_in_parts(texts, most)

    def _embed_in_parts(self, texts: list[str], most: int) -> tuple[np.ndarray, int]:
        parts = [self._embed_batch(texts[start:start + most]) for start in range(0, len(texts), most)]
        return np.vstack([vectors for vectors, _ in parts]), sum(tokens for _, tokens in parts)

    def _check_dimension(self, dimension: int) -> None:
        with self._lock:
            if self._dimension is None:
                self._dimension = dimension
                log.info("%s makes %d-dimensional vectors (%s)", self.endpoint.describe(), dimension,
                         self.endpoint.model)
        if dimension != self._dimension:
            raise ModelUnavailableError(
                "embedding", f"{self.endpoint.describe()} sent {dimension}-dimensional vectors after "
                             f"{self._dimension}-dimensional ones; check that EMBEDDING_API_MODEL names one "
                             "model and that no other server answers at that address")

    def counting(self) -> contextlib.AbstractContextManager[Callable[[], int]]:
        """Count the tokens the server reports (usage) for this thread's calls inside the block."""
        return self._tokens.counting()


def _vector(value: Any) -> np.ndarray | list[float]:
    """A float list, or base64 of little-endian float32 (what servers that only do base64 send)."""
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value, validate=True), dtype="<f4")
    if not isinstance(value, list):
        raise TypeError(f"an embedding is a {type(value).__name__}")
    return value


# ---------------------------------------------------------------- rerank

class RemoteReranker:
    """Relevance scores from the Jina/Cohere ``/rerank`` shape (``RERANKER_BACKEND=openai``) or TEI's
    ``/rerank`` (``tei``); passages are cut to RERANK_MAX_LENGTH tokens here first, with the
    reranker's own tokenizer when its folder is on disk, else by characters (never more tokens)."""

    def __init__(self, settings: Settings, client: ApiClient | None = None, cutter: PassageCutter | None = None):
        self.settings = settings
        self.shape = settings.reranker_backend
        self.client = client or ApiClient(Endpoint.of(settings, "reranker"))
        self.endpoint = self.client.endpoint
        self._parallel = _Parallel(self.client)
        self._cutter = cutter

    def predict(self, pairs: Sequence[tuple[str, str]], batch_size: int = 16, show_progress_bar: bool = False,
                convert_to_numpy: bool = True, **_ignored: Any) -> np.ndarray:
        """Like CrossEncoder.predict: one score per (query, passage) pair, higher is more relevant."""
        if self._cutter is None:
            self._cutter = PassageCutter.for_settings(self.settings)
        by_query: dict[str, list[int]] = {}
        for index, (query, _) in enumerate(pairs):
            by_query.setdefault(query, []).append(index)
        work = []
        for query, indexes in by_query.items():
            for start in range(0, len(indexes), batch_size):
                part = indexes[start:start + batch_size]
                work.append((query, part, [self._cutter.cut(query, pairs[i][1]) for i in part]))
        scores = np.zeros(len(pairs), dtype=np.float32)
        for part, part_scores in zip([w[1] for w in work], self._parallel.map(self._score, work), strict=True):
            scores[part] = part_scores
        return scores

    def _score(self, item: tuple[str, list[int], list[str]]) -> list[float]:
        query, _, passages = item
        if self.shape == "tei":
            answer = self.client.post("/rerank", {"query": query, "texts": passages, "raw_scores": False,
                                                  "truncate": True})
            rows, field = answer, "score"
        else:
            answer = self.client.post("/rerank", {"model": self.endpoint.model, "query": query,
                                                  "documents": passages, "top_n": len(passages),
                                                  "return_documents": False})
            rows, field = answer.get("results") if isinstance(answer, dict) else None, "relevance_score"
        try:
            scores = {int(row["index"]): float(row[field]) for row in rows}
            return [scores[index] for index in range(len(passages))]
        except (KeyError, TypeError, ValueError) as error:
            raise self.client.malformed(f"something that is not a {self.shape} rerank answer "
                                        f"(missing {_short(error)})") from None


class PassageCutter:
    """Cuts a passage so that (query, passage) fits RERANK_MAX_LENGTH tokens."""

    SPECIAL_TOKENS = 4  # <s> query </s></s> passage </s>

    def __init__(self, max_length: int, tokenizer: Any | None):
        self.max_length, self.tokenizer = max_length, tokenizer

    @classmethod
    def for_settings(cls, settings: Settings) -> PassageCutter:
        """With RERANKER_MODEL's tokenizer when its folder is on disk (no download is tried)."""
        from askany.models.loaders import load_tokenizer
        from askany.models.roles import RERANKER

        try:
            tokenizer = load_tokenizer(settings, RERANKER, allow_download=False)
        except AskAnyError:
            tokenizer = None
        if tokenizer is not None and not getattr(tokenizer, "is_fast", False):
            tokenizer = None  # offsets, which the cut needs, come only from fast tokenizers
        log.info("Reranker passages are cut to %d %s", settings.rerank_max_length,
                 "tokens" if tokenizer is not None else "characters (no reranker tokenizer on disk)")
        return cls(settings.rerank_max_length, tokenizer)

    def cut(self, query: str, passage: str) -> str:
        if self.tokenizer is None:
            return passage[:max(16, self.max_length - len(query) - self.SPECIAL_TOKENS)]
        query_tokens = len(self.tokenizer(query, add_special_tokens=False)["input_ids"])
        budget = max(16, self.max_length - query_tokens - self.SPECIAL_TOKENS)
        offsets = self.tokenizer(passage, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return passage if len(offsets) <= budget else passage[:offsets[budget - 1][1]]


# ---------------------------------------------------------------- --check

def probe(settings: Settings, role: str) -> dict[str, Any]:
    """What --check shows for a remote role: reachable or not, the model name and dimension the
    server reports. One request, no retries, a short timeout."""
    endpoint = Endpoint.of(settings, role)
    endpoint = replace(endpoint, retries=0, timeout=min(endpoint.timeout, PROBE_TIMEOUT_SECONDS), concurrency=1)
    found: dict[str, Any] = {"base": endpoint.base, "model": endpoint.model, "reachable": False}
    client = ApiClient(endpoint)
    try:
        if role == "embedding":
            answer = client.post("/embeddings", {"model": endpoint.model, "input": ["ping"],
                                                 "encoding_format": "float"})
            found["model"] = str(answer.get("model") or endpoint.model)
            found["dimension"] = len(_vector(answer["data"][0]["embedding"]))
        elif role == "reranker":
            cutter = PassageCutter(settings.rerank_max_length, None)
            RemoteReranker(settings, client, cutter).predict([("ping", "ping")])
        else:
            served = [str(model.get("id")) for model in client.get("/models")["data"]]
            found["served"] = served
            if endpoint.model not in served:
                found["reachable"] = True
                found["problem"] = (f"{endpoint.describe()} does not serve {endpoint.model} (it serves "
                                    f"{', '.join(served[:8]) or 'nothing'}); set LLM_API_MODEL to one of them")
                return found
        found["reachable"] = True
        found["problem"] = None
    except ModelUnavailableError as error:
        found["problem"] = str(error)
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as error:
        found["reachable"] = True
        found["problem"] = str(client.malformed(f"an unexpected answer ({_short(error)})"))
    finally:
        client.close()
    return found
