"""AskAny's ranking as LlamaIndex components: hybrid + rerank retrieval as a `BaseRetriever`, the
cross-encoder as a node postprocessor that reranks nodes from any retriever."""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle

from askany.retrieval.retriever import Mode
from askany.service import Service
from askany.storage.nodes import to_node


class AskAnyRetriever(BaseRetriever):
    """Keyword (BM25) and vector search fused and reranked, exactly as AskAny answers its own questions.

    Each node's score is the last stage's (rerank, else fused); `node.metadata` carries the chunk's
    kb, source, title, heading path and tags, and the stage ranks under "askany_stages".
    """

    def __init__(self, service: Service, *, mode: Mode = "hybrid", top_k: int | None = None, rerank: bool = True,
                 kbs: list[str] | None = None, tags: list[str] | None = None, faq: bool | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.service = service
        self.options = {"mode": mode, "top_k": top_k, "rerank": rerank, "kbs": kbs, "tags": tags, "faq": faq}
        self.notices: list[str] = []  # of the last query: stages switched off, a rebuilt index

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        result = self.service.retrieve(query_bundle.query_str, **self.options)
        self.notices = list(result.notices)
        found = []
        for hit in result.hits:
            node = to_node(hit.chunk)
            node.metadata["askany_stages"] = {stage: {"rank": s.rank, "score": s.score}
                                              for stage, s in hit.stages.items()}
            node.excluded_llm_metadata_keys.append("askany_stages")
            node.excluded_embed_metadata_keys.append("askany_stages")
            found.append(NodeWithScore(node=node, score=hit.score))
        return found


class AskAnyReranker(BaseNodePostprocessor):
    """Reorders nodes by AskAny's cross-encoder (bge-reranker) score and keeps the best `top_n`."""

    top_n: int | None = None
    _service: Service = PrivateAttr()

    def __init__(self, service: Service, top_n: int | None = None, **kwargs: Any):
        super().__init__(top_n=top_n, **kwargs)
        self._service = service

    @classmethod
    def class_name(cls) -> str:
        return "AskAnyReranker"

    def _postprocess_nodes(self, nodes: list[NodeWithScore],
                           query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("AskAnyReranker needs the query to rerank against")
        order = self._service.rerank(query_bundle.query_str, [n.node.get_content() for n in nodes],
                                     top_n=self.top_n)
        return [NodeWithScore(node=nodes[index].node, score=score) for index, score in order]
