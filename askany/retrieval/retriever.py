"""Where chunks are ranked: keyword (BM25) and vector (HNSW) top-N, weighted RRF fusion, cross-encoder rerank.

Every stage can be switched off, every hit keeps its rank and score from each
stage, and each stage is timed. A missing embedding model or reranker turns
its stage off with a notice instead of failing the query.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Literal

from askany.context import AskAny
from askany.core.errors import AskAnyError, ModelUnavailableError
from askany.core.notices import Notice
from askany.core.text import is_utf8
from askany.models.registry import embedding_dimension
from askany.retrieval.rerank import rerank_scores, reranker_problem
from askany.storage.keyword_index import KeywordIndexCorrupt
from askany.storage.store import EmbeddingMismatchError, SearchFilter, StoredChunk

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "vector", "keyword"]
MODES: tuple[str, ...] = ("hybrid", "vector", "keyword")
MAX_QUERY_CHARS = 2000  # longer questions are cut: beyond this they only slow every stage down
MAX_TOP_K = 100  # as the TOP_K setting allows
MAX_QUERY_TERMS = 256
EMBEDDING_CACHE_SIZE = 256
TAG_PATTERN = re.compile(r"(?:^|(?<=\s))@([^\s@]+)")


class QueryError(AskAnyError):
    """The query cannot be searched (empty, only punctuation, unknown filter)."""


def checked_question(text: str) -> str:
    """The question as every stage can take it, or a QueryError saying what is wrong with it."""
    if not is_utf8(text):
        raise QueryError("The question holds bytes that are not valid UTF-8 text; retype it, or set the "
                         "terminal to UTF-8 (for example LANG=C.UTF-8)")
    return text.replace("\x00", " ")  # Postgres text cannot hold NUL


def checked_top_k(top_k: object) -> int | None:
    """None (the TOP_K setting) or a number of passages from 1 to MAX_TOP_K; a QueryError otherwise."""
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise QueryError(f"The number of passages (--top-k) must be a whole number from 1 to {MAX_TOP_K}, "
                         f"not {top_k!r}")
    return top_k


@dataclass
class StageScore:
    rank: int
    score: float


@dataclass
class Hit:
    chunk: StoredChunk
    stages: dict[str, StageScore] = field(default_factory=dict)

    @property
    def score(self) -> float:
        """The score of the last stage that ranked this hit."""
        for stage in ("rerank", "fused", "vector", "keyword"):
            if stage in self.stages:
                return self.stages[stage].score
        return 0.0


@dataclass
class RetrievalResult:
    query: str
    hits: list[Hit]
    timings: dict[str, float] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    mode: str = "hybrid"
    reranked: bool = False


def parse_tags(text: str) -> tuple[str, list[str]]:
    """Split `@tag` words out of a question: ('如何重启 deployment', ['k8s']) for '@k8s 如何重启 deployment'."""
    tags = TAG_PATTERN.findall(text)
    return TAG_PATTERN.sub(" ", text).strip(), tags


def rrf_fuse(channels: dict[str, list[tuple[int, float]]], weights: dict[str, float],
             k: int) -> list[tuple[int, float]]:
    """Weighted reciprocal-rank fusion: sum over channels of weight / (k + rank)."""
    fused: dict[int, float] = {}
    for name, ranked in channels.items():
        weight = weights.get(name, 1.0)
        for rank, (chunk_id, _) in enumerate(ranked, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


class Retriever:
    def __init__(self, app: AskAny):
        self.app = app
        self.settings = app.settings
        self._embeddings: dict[str, object] = {}

    def check_filters(self, kbs: list[str] | None, tags: list[str] | None) -> None:
        """A knowledge base or tag nobody has gets a clear message, not an empty result."""
        missing_kbs, missing_tags = self.app.store.missing(list(kbs or []), list(tags or []))
        if missing_kbs:  # the full lists are read only to write the message
            known = {kb["kb"] for kb in self.app.store.knowledge_bases()}
            raise QueryError(f"Knowledge base {', '.join(missing_kbs)} does not exist (known: "
                             f"{', '.join(sorted(known)) or 'none yet'}); check --kb or ingest documents first")
        if missing_tags:
            known_tags = set(self.app.store.known_tags())
            raise QueryError(f"No document is tagged {', '.join(missing_tags)} (known tags: "
                             f"{', '.join(sorted(known_tags)) or 'none'}); check the @tag or --tags filter")

    def retrieve(self, query: str, *, mode: Mode = "hybrid", top_k: int | None = None, rerank: bool = True,
                 search_filter: SearchFilter | None = None) -> RetrievalResult:
        if mode not in MODES:
            raise QueryError(f"Unknown mode {mode!r}; use one of {', '.join(MODES)}")
        query = checked_question(query).strip()[:MAX_QUERY_CHARS]
        top_k = checked_top_k(top_k)
        if not self.app.analyzer.is_searchable(query):
            raise QueryError("The question has no words to search for; ask it with words, e.g. 如何重启服务？")
        top_k = top_k or self.settings.top_k
        result = RetrievalResult(query=query, hits=[], mode=mode)
        channels: dict[str, list[tuple[int, float]]] = {}

        if mode in ("hybrid", "keyword"):
            channels["keyword"] = self._keyword(query, search_filter, result)
        if mode in ("hybrid", "vector"):
            ranked = self._vector(query, search_filter, result)
            if ranked is not None:
                channels["vector"] = ranked
            elif mode == "vector":
                raise QueryError(result.notices[-1])

        ranked = (rrf_fuse(channels, {"keyword": self.settings.keyword_weight,
                                      "vector": self.settings.vector_weight}, self.settings.rrf_k)
                  if len(channels) > 1 else next(iter(channels.values()), []))
        stages = {name: _positions(channel) for name, channel in channels.items()}
        if len(channels) > 1:
            stages["fused"] = _positions(ranked)
        chunks = self.app.store.fetch_chunks([chunk_id for chunk_id, _ in ranked[:max(top_k, 100)]])
        hits = [Hit(chunks[chunk_id], {name: found[chunk_id] for name, found in stages.items()
                                       if chunk_id in found})
                for chunk_id, _ in ranked if chunk_id in chunks]
        if rerank and hits:
            hits = self._rerank(query, hits, result)
        result.hits = hits[:top_k]
        return result

    # ------------------------------------------------------------ stages
    def _keyword(self, query: str, search_filter: SearchFilter | None,
                 result: RetrievalResult) -> list[tuple[int, float]]:
        store = self.app.store
        notice = store.ensure_keyword_index()
        started = time.perf_counter()
        terms = list(dict.fromkeys(self.app.analyzer.terms(query)))[:MAX_QUERY_TERMS]
        try:
            ranked = store.keyword_search(terms, self.settings.keyword_top_n, search_filter)
        except KeywordIndexCorrupt as error:
            log.warning("%s: rebuilding the keyword index", error)
            notice = store.repair_keyword_index(str(error))
            ranked = store.keyword_search(terms, self.settings.keyword_top_n, search_filter)
        if notice:
            result.notices.append(notice)
        result.timings["keyword"] = time.perf_counter() - started
        return ranked

    def _vector(self, query: str, search_filter: SearchFilter | None,
                result: RetrievalResult) -> list[tuple[int, float]] | None:
        if not self.settings.embedding_enabled:
            result.notices.append(Notice("vector_off"))
            return None
        model = self.app.embedding_model()
        if model is None:
            result.notices.append(Notice("vector_unavailable", reason=self.app.models.error("embedding")))
            return None
        try:
            self.app.store.check_vector_model(self.settings.embedding_model_name, embedding_dimension(model))
            started = time.perf_counter()
            embedding = self._embed(model, query)
        except EmbeddingMismatchError as error:
            result.notices.append(Notice("vector_mismatch", reason=error))
            return None
        except ModelUnavailableError as error:  # its server is down or refuses: keyword search goes on
            result.notices.append(Notice("vector_unavailable", reason=error))
            return None
        result.timings["embed"] = time.perf_counter() - started
        started = time.perf_counter()
        ranked = self.app.store.vector_search(embedding, self.settings.vector_top_n, self.settings.hnsw_ef_search,
                                              search_filter)
        result.timings["vector"] = time.perf_counter() - started
        return ranked

    def prime_query_embeddings(self, queries: list[str]) -> None:
        """Embed many queries in batches up front (evaluation): far faster than one at a time."""
        model = self.app.embedding_model()
        texts = list(dict.fromkeys(query.strip()[:MAX_QUERY_CHARS] for query in queries if query.strip()))
        if model is None or not texts:
            return
        try:
            vectors = model.encode(texts, batch_size=self.settings.embedding_batch_size,
                                   normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        except ModelUnavailableError:
            return  # each question then meets the failure itself, with its notice
        self._embeddings.update(zip(texts, vectors, strict=True))

    def _embed(self, model: object, query: str) -> object:
        """Query vectors are cached: evaluation and AUTO routing search the same question several times."""
        if query not in self._embeddings:
            if len(self._embeddings) >= EMBEDDING_CACHE_SIZE:
                self._embeddings.pop(next(iter(self._embeddings)))
            self._embeddings[query] = model.encode([query], normalize_embeddings=True, convert_to_numpy=True,
                                                   show_progress_bar=False)[0]
        return self._embeddings[query]

    def _rerank(self, query: str, hits: list[Hit], result: RetrievalResult) -> list[Hit]:
        problem = reranker_problem(self.app)
        if problem is not None:
            result.notices.append(Notice("rerank_off") if problem == "off"
                                  else Notice("rerank_unavailable", reason=problem))
            return hits
        started = time.perf_counter()
        head, tail = hits[:self.settings.rerank_top_n], hits[self.settings.rerank_top_n:]
        try:
            scores = rerank_scores(self.app, query, [hit.chunk.text for hit in head])
        except ModelUnavailableError as error:  # its server is down or refuses: the fused order stands
            result.notices.append(Notice("rerank_unavailable", reason=error))
            return hits
        order = sorted(range(len(head)), key=lambda i: -scores[i])
        for rank, index in enumerate(order, start=1):
            head[index].stages["rerank"] = StageScore(rank, scores[index])
        result.timings["rerank"] = time.perf_counter() - started
        result.reranked = True
        return [head[i] for i in order] + tail


def _positions(ranked: list[tuple[int, float]]) -> dict[int, StageScore]:
    return {chunk_id: StageScore(rank, score) for rank, (chunk_id, score) in enumerate(ranked, start=1)}
