"""The AskAny store as a LlamaIndex vector store, so `VectorStoreIndex.from_vector_store` can use it.

Vector queries go through the HNSW index, text-search queries through the BM25
keyword index; nodes added here are stored exactly as ingestion stores them
(`storage/nodes.py`, terms included), grouped into documents by their `ref_doc_id`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterOperator,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from pydantic import PrivateAttr

from askany.context import AskAny
from askany.storage.nodes import chunk_records, to_node
from askany.storage.store import DocumentRecord, SearchFilter


def _search_filter(filters: MetadataFilters | None) -> SearchFilter:
    """Supports the filters AskAny indexes: kb (== or in), tags (any of), is_faq (==)."""
    result = SearchFilter()
    for item in filters.filters if filters else []:
        values = item.value if isinstance(item.value, list) else [item.value]
        if item.key == "kb" and item.operator in (FilterOperator.EQ, FilterOperator.IN):
            result.kbs = [str(v) for v in values]
        elif item.key == "tags" and item.operator in (FilterOperator.EQ, FilterOperator.IN,
                                                      FilterOperator.CONTAINS, FilterOperator.ANY):
            result.tags = [str(v) for v in values]
        elif item.key == "is_faq" and item.operator == FilterOperator.EQ:
            result.faq = bool(item.value)
        else:
            raise ValueError(f"AskAnyVectorStore cannot filter on {item.key} {item.operator}")
    return result


class AskAnyVectorStore(BasePydanticVectorStore):
    stores_text: bool = True
    _app: AskAny = PrivateAttr()

    def __init__(self, app: AskAny, **kwargs: Any):
        super().__init__(**kwargs)
        self._app = app

    @property
    def client(self) -> Any:
        return self._app.store

    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        by_document: dict[str, list[BaseNode]] = defaultdict(list)
        for node in nodes:
            by_document[node.ref_doc_id or node.node_id].append(node)
        settings = self._app.settings
        records = []
        for doc_id, doc_nodes in by_document.items():
            first = doc_nodes[0].metadata
            texts = [node.get_content() for node in doc_nodes]
            terms = self._app.analyzer.bags(texts)
            if any(node.embedding is not None for node in doc_nodes):
                dim = len(next(node.embedding for node in doc_nodes if node.embedding is not None))
                self._app.store.ensure_vector_table(settings.embedding_model_name, dim)
            chunks = chunk_records(doc_nodes, terms)
            records.append(DocumentRecord(
                kb=str(first.get("kb", settings.default_kb)), source=str(first.get("source", doc_id)),
                title=str(first.get("title", doc_id)), kind="doc", content_hash=str(first.get("doc_hash", "")),
                fingerprint="llamaindex", tags=list(first.get("tags", [])), encoding=None, chunks=chunks))
        self._app.store.replace_documents(records)
        self._app.store.ensure_vector_index(settings.hnsw_m, settings.hnsw_ef_construction)
        return [node.node_id for node in nodes]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """`ref_doc_id` is "kb:source", as ingestion builds LlamaIndex Document ids."""
        kb, _, source = ref_doc_id.partition(":")
        self._app.store.delete_document(kb, source)

    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        return [to_node(chunk) for chunk in self._app.store.fetch_by_node_ids(node_ids or [])]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        store = self._app.store
        search_filter = _search_filter(query.filters)
        if query.mode == VectorStoreQueryMode.TEXT_SEARCH or query.query_embedding is None:
            terms = self._app.analyzer.terms(query.query_str or "")
            ranked = store.keyword_search(terms, query.similarity_top_k, search_filter)
        else:
            ranked = store.vector_search(np.asarray(query.query_embedding, dtype=np.float32),
                                         query.similarity_top_k, self._app.settings.hnsw_ef_search, search_filter)
        chunks = store.fetch_chunks([chunk_id for chunk_id, _ in ranked])
        kept = [(chunks[chunk_id], score) for chunk_id, score in ranked if chunk_id in chunks]
        return VectorStoreQueryResult(nodes=[to_node(chunk) for chunk, _ in kept],
                                      similarities=[score for _, score in kept],
                                      ids=[chunk.node_id for chunk, _ in kept])
