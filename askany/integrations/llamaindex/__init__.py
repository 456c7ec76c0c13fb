"""AskAny inside LlamaIndex: its store as a vector store, its hybrid + rerank retrieval as a retriever,
its reranker as a node postprocessor and its LLM backend as an LLM.

    from llama_index.core.query_engine import RetrieverQueryEngine
    from askany.integrations.llamaindex import AskAnyLLM, AskAnyRetriever
    from askany.service import Service

    service = Service()
    engine = RetrieverQueryEngine.from_args(AskAnyRetriever(service, kbs=["ops"]), llm=AskAnyLLM(service))
    print(engine.query("如何回滚发布？"))
"""

from askany.integrations.llamaindex.llm import AskAnyLLM
from askany.integrations.llamaindex.retriever import AskAnyReranker, AskAnyRetriever
from askany.integrations.llamaindex.vector_store import AskAnyVectorStore

__all__ = ["AskAnyLLM", "AskAnyReranker", "AskAnyRetriever", "AskAnyVectorStore"]
