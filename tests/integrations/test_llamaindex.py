"""AskAny as LlamaIndex components: a query engine built from AskAny's retriever, reranker and LLM over
the tiny local models answers a question from the ingested samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from askany.integrations.llamaindex import AskAnyLLM, AskAnyReranker, AskAnyRetriever, AskAnyVectorStore
from askany.service import Service
from tests.support.fixtures import empty_database

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "如何回滚发布？"


@pytest.fixture
def service(make_app, tiny_embedding_dir, tiny_reranker_dir, tiny_llm_dir) -> Service:
    app = make_app(embedding_model=str(tiny_embedding_dir), reranker_model=str(tiny_reranker_dir),
                   llm_backend="transformers", llm_model=str(tiny_llm_dir), llm_max_new_tokens=8)
    empty_database(app)  # other tests' knowledge bases hold the same samples: the sources must be these
    service = Service(app=app)
    service.ingest([ROOT / "ingest" / "samples"], kb="li")
    return service


def test_query_engine_over_askany_answers_with_its_sources(service: Service) -> None:
    from llama_index.core.query_engine import RetrieverQueryEngine

    engine = RetrieverQueryEngine.from_args(
        AskAnyRetriever(service, rerank=False, top_k=5), llm=AskAnyLLM(service),
        node_postprocessors=[AskAnyReranker(service, top_n=2)])
    response = engine.query(QUESTION)

    assert isinstance(response.response, str) and response.response.strip()
    assert len(response.source_nodes) == 2
    assert all(n.node.metadata["kb"] == "li" for n in response.source_nodes)
    scores = [n.score for n in response.source_nodes]
    assert scores == sorted(scores, reverse=True)
    # The postprocessor's order is the reranker's own, as the service gives it.
    texts = [n.node.get_content() for n in AskAnyRetriever(service, rerank=False, top_k=5).retrieve(QUESTION)]
    best = [texts[i] for i, _ in service.rerank(QUESTION, texts, top_n=2)]
    assert [n.node.get_content() for n in response.source_nodes] == best


def test_retriever_returns_what_askany_ranks(service: Service) -> None:
    nodes = AskAnyRetriever(service, top_k=3).retrieve(QUESTION)
    hits = service.retrieve(QUESTION, top_k=3).hits
    assert [n.node.node_id for n in nodes] == [h.chunk.node_id for h in hits]
    assert [n.score for n in nodes] == pytest.approx([h.score for h in hits])
    assert all("rerank" in n.node.metadata["askany_stages"] for n in nodes)
    # the stage scores are for the reader, not for the LLM's prompt
    assert "askany_stages" not in nodes[0].node.get_content(metadata_mode="llm")


def test_llm_chats_through_the_local_model(service: Service) -> None:
    from llama_index.core.llms import ChatMessage

    llm = AskAnyLLM(service)
    chunks = list(llm.stream_chat([ChatMessage(role="user", content="你好")]))
    assert chunks and chunks[-1].message.content == "".join(c.delta for c in chunks)
    assert llm.metadata.context_window == service.generator().context_window
    completions = list(llm.stream_complete("你好"))
    assert completions and completions[-1].text == "".join(c.delta for c in completions)
    assert "<think>" not in completions[-1].text


def test_reranker_off_is_one_clear_error(make_app) -> None:
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from askany.core.errors import ModelUnavailableError

    service = Service(app=make_app(reranker_enabled=False))
    with pytest.raises(ModelUnavailableError, match="RERANKER_ENABLED"):
        AskAnyReranker(service).postprocess_nodes([NodeWithScore(node=TextNode(text="a"))], QueryBundle("x"))


def test_nodes_added_through_the_vector_store_keep_their_metadata(make_app) -> None:
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    app = make_app()
    node = TextNode(id_="n-1", text="发布回滚使用 kubectl rollout undo 命令。",
                    metadata={"kb": "li", "source": "user/doc.md", "title": "发布", "owner": "ops-team"})
    node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id="li:user/doc.md")
    store = AskAnyVectorStore(app)
    assert store.add([node]) == ["n-1"]
    [back] = store.get_nodes(["n-1"])
    assert back.metadata["owner"] == "ops-team" and back.metadata["source"] == "user/doc.md"
    assert back.ref_doc_id == "li:user/doc.md" and back.get_content() == node.get_content()
    store.delete("li:user/doc.md")
    assert store.get_nodes(["n-1"]) == []
