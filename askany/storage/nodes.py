"""LlamaIndex nodes in and out of the store: the one conversion between a `TextNode` and a chunk row.

The LlamaIndex vector-store adapter stores nodes given by a LlamaIndex user through
`chunk_records`, and every search result leaves the store as a node through `to_node`. Ingestion
makes the same rows directly (`Ingestor._record`), so its worker processes never import LlamaIndex.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from llama_index.core.schema import BaseNode, NodeRelationship, RelatedNodeInfo, TextNode

from askany.ingestion.keywords import TermBag
from askany.storage.store import ChunkRecord, StoredChunk

# Metadata that has its own column; anything else a node carries is kept in the chunk's metadata.
COLUMN_KEYS = frozenset({"source", "title", "kb", "heading_path", "position", "tags", "is_faq", "doc_hash"})


def chunk_node(node_id: str, text: str, document_id: str, metadata: dict[str, Any]) -> TextNode:
    """A chunk as a LlamaIndex node whose SOURCE relationship names its document ("kb:source")."""
    node = TextNode(id_=node_id, text=text, metadata=metadata)
    node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=document_id)
    return node


def chunk_records(nodes: Sequence[BaseNode], terms: Sequence[TermBag]) -> list[ChunkRecord]:
    """The rows for one document's nodes, in order; `terms` are their keyword bags."""
    records = []
    for index, (node, bag) in enumerate(zip(nodes, terms, strict=True)):
        meta = node.metadata
        records.append(ChunkRecord(
            node_id=node.node_id, position=int(meta.get("position", index)), text=node.get_content(),
            heading_path=list(meta.get("heading_path", [])), tags=list(meta.get("tags", [])),
            is_faq=bool(meta.get("is_faq", False)), terms=bag,
            metadata={key: value for key, value in meta.items() if key not in COLUMN_KEYS},
            embedding=None if node.embedding is None else np.asarray(node.embedding, dtype=np.float32)))
    return records


def to_node(chunk: StoredChunk) -> TextNode:
    """A stored chunk as the node it was stored from."""
    return chunk_node(chunk.node_id, chunk.text, f"{chunk.kb}:{chunk.source}", {
        "source": chunk.source, "title": chunk.title, "kb": chunk.kb, "heading_path": chunk.heading_path,
        "position": chunk.position, "tags": chunk.tags, "is_faq": chunk.is_faq, **chunk.metadata})
