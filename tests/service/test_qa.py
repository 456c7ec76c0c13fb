"""Asking questions end to end: every mode and query type, filters, thinking, streaming, bad queries."""

from __future__ import annotations

from pathlib import Path

import pytest

from askany.ingestion.pipeline import Ingestor
from askany.retrieval.retriever import QueryError, Retriever, parse_tags, rrf_fuse
from askany.service.qa import QA
from askany.storage.store import SearchFilter
from tests.support.openai_standin import StandInServer, delta

SAMPLES = Path(__file__).resolve().parents[2] / "ingest" / "samples"


@pytest.fixture
def samples_app(make_app, empty_db, tiny_embedding_dir, tiny_reranker_dir):
    """The sample documents ingested with the tiny embedding model; reranker and no LLM."""
    app = make_app(embedding_model=str(tiny_embedding_dir), reranker_model=str(tiny_reranker_dir))
    report = Ingestor(app).run([SAMPLES], kb="samples", tags=["运维"], progress=False)
    assert not report.failed and report.vectors_written == report.chunks_written
    return app


def names(hits) -> list[str]:
    return [Path(hit.chunk.source).name for hit in hits]


def test_every_mode_keeps_each_stage_score(samples_app) -> None:
    retriever = Retriever(samples_app)
    keyword = retriever.retrieve("如何滚动重启 Deployment", mode="keyword", rerank=False)
    assert names(keyword.hits)[0] == "k8s-运维手册.md" and set(keyword.hits[0].stages) == {"keyword"}
    assert "keyword" in keyword.timings and "vector" not in keyword.timings

    vector = retriever.retrieve("如何滚动重启 Deployment", mode="vector", rerank=False)
    assert vector.hits and all(set(hit.stages) == {"vector"} for hit in vector.hits)
    assert {"embed", "vector"} <= set(vector.timings)

    hybrid = retriever.retrieve("如何滚动重启 Deployment", mode="hybrid", rerank=False, top_k=3)
    assert len(hybrid.hits) == 3 and all("fused" in hit.stages for hit in hybrid.hits)
    assert names(hybrid.hits)[0] == "k8s-运维手册.md"

    reranked = retriever.retrieve("如何滚动重启 Deployment", mode="hybrid", rerank=True, top_k=3)
    assert reranked.reranked and all("rerank" in hit.stages for hit in reranked.hits)
    scores = [hit.stages["rerank"].score for hit in reranked.hits]
    assert scores == sorted(scores, reverse=True) and "rerank" in reranked.timings


def test_weighted_rrf() -> None:
    fused = rrf_fuse({"keyword": [(1, 9.0), (2, 5.0)], "vector": [(2, 0.9), (3, 0.8)]},
                     {"keyword": 1.0, "vector": 0.5}, k=2)
    assert [chunk for chunk, _ in fused] == [2, 1, 3]  # found by both channels beats first in one
    assert fused[0][1] == pytest.approx(1 / 4 + 0.5 / 3) and fused[1][1] == pytest.approx(1 / 3)


def test_missing_models_switch_their_stage_off_with_a_notice(make_app, empty_db) -> None:
    app = make_app()
    Ingestor(app).run([SAMPLES], kb="samples", progress=False)
    result = Retriever(app).retrieve("灰度发布", mode="hybrid", rerank=True)
    assert names(result.hits)[0] == "发布流程.md" and not result.reranked
    assert any("Vector search unavailable" in n for n in result.notices)
    assert any("Reranking unavailable" in n and "--download-models reranker" in n for n in result.notices)
    with pytest.raises(QueryError, match="Vector search unavailable"):
        Retriever(app).retrieve("灰度发布", mode="vector")


def test_auto_routes_to_a_confident_faq(samples_app) -> None:
    result = QA(samples_app).ask("VPN 连不上怎么办？", mode="keyword", rerank=False)
    assert result.routed_to == "faq" and result.answer.kind == "faq"
    assert result.answer.text.startswith("先确认客户端版本不低于 5.2") and result.answer.citations == [1]
    assert result.sources[0].is_faq and result.cited_sources()[0].source.endswith("常见问题.json")


def test_auto_falls_back_to_documents_with_weak_faq_hits(samples_app) -> None:
    result = QA(samples_app).ask("生产数据库多久做一次全量备份？", mode="keyword", rerank=False)
    assert result.routed_to == "docs" and result.answer.kind == "extracted"
    assert result.sources[0].source.endswith("数据库备份.txt") and not result.sources[0].is_faq
    weak = [source for source in result.sources if source.is_faq]
    assert weak and all(source.low_confidence for source in weak)
    assert "凌晨 2 点" in result.answer.text and result.answer.citations


def test_faq_and_docs_query_types(samples_app) -> None:
    qa = QA(samples_app)
    faq = qa.ask("数据库地址", query_type="FAQ", mode="keyword", rerank=False)
    assert faq.routed_to == "faq" and "db-test.internal" in faq.answer.text
    docs = qa.ask("VPN 连不上怎么办？", query_type="DOCS", mode="keyword", rerank=False)
    assert docs.routed_to == "docs" and not any(source.is_faq for source in docs.sources)
    with pytest.raises(QueryError, match="Unknown query type"):
        qa.ask("VPN", query_type="SOMETIMES")


def test_tag_filters_inline_and_as_option(samples_app) -> None:
    assert parse_tags("@k8s 如何重启 deployment") == ("如何重启 deployment", ["k8s"])
    qa = QA(samples_app)
    inline = qa.ask("@k8s Pod 一直 Pending 怎么办", query_type="FAQ", mode="keyword", rerank=False)
    assert inline.tags == ["k8s"] and "kubectl describe pod" in inline.answer.text
    option = qa.ask("客户端日志", query_type="FAQ", tags=["网络"], mode="keyword", rerank=False)
    assert option.sources and option.sources[0].text.startswith("问：VPN")
    with pytest.raises(QueryError, match="No document is tagged 不存在 .*known tags: .*k8s"):
        qa.ask("@不存在 如何重启")
    with pytest.raises(QueryError, match="Knowledge base nowhere does not exist"):
        qa.ask("如何重启", kbs=["nowhere"])
    assert qa.ask("灰度发布", kbs=["samples"], mode="keyword", rerank=False).sources


@pytest.mark.parametrize("question", ["", "   \n\t", "？？！！……", "-" * 40])
def test_questions_without_words_get_a_clear_message(samples_app, question) -> None:
    with pytest.raises(QueryError, match="no words to search for"):
        QA(samples_app).ask(question)


@pytest.mark.parametrize("question", [
    "'; DROP TABLE chunks; --",
    "\"重启 deployment",
    "部署的 ' 单引号 \" 和 \\ 反斜杠",
    "如何重启服务？" * 1500,  # 10,500 characters
    "% _ ? $1 ::text",
])
def test_odd_questions_are_answered_without_database_errors(samples_app, question) -> None:
    result = QA(samples_app).ask(question, mode="hybrid")
    assert result.answer.text
    assert samples_app.store.count_chunks(SearchFilter(kbs=["samples"])) > 0  # nothing was dropped


def test_empty_knowledge_base(make_app, empty_db) -> None:
    with pytest.raises(QueryError, match="knowledge base is empty.*--ingest"):
        QA(make_app()).ask("如何重启服务？")


def test_answer_without_llm_is_extracted_with_citations(samples_app) -> None:
    result = QA(samples_app).ask("如何滚动重启 Deployment？", query_type="DOCS", mode="keyword", rerank=False)
    assert result.answer.kind == "extracted" and "[1]" in result.answer.text
    assert "kubectl rollout restart" in result.answer.text
    assert result.cited_sources()[0].source.endswith("k8s-运维手册.md")


def test_thinking_streaming_and_citations_through_the_openai_backend(make_app, tiny_embedding_dir,
                                                                     samples_app) -> None:
    def reply(body: dict) -> list[dict]:
        thinking = body.get("chat_template_kwargs", {}).get("enable_thinking")
        pieces = [delta(reasoning_content="先找到重启的步骤。")] if thinking else []
        return pieces + [delta(content="使用 kubectl rollout restart "), delta(content="滚动重启[1]。")]

    server = StandInServer(reply)
    try:
        app = make_app(embedding_model=str(tiny_embedding_dir), llm_backend="openai", llm_api_base=server.base,
                       llm_api_model="qwen3")
        qa = QA(app)
        events = list(qa.ask_stream("如何滚动重启 Deployment？", query_type="DOCS", mode="keyword", rerank=False,
                                    thinking=True))
        answer_pieces = [piece for kind, piece in events if kind == "answer"]
        thinking_pieces = [piece for kind, piece in events if kind == "thinking"]
        result = events[-1][1]
        assert len(answer_pieces) >= 2 and "".join(answer_pieces) == result.answer.text
        assert "".join(thinking_pieces) == result.answer.thinking == "先找到重启的步骤。"
        assert result.answer.kind == "generated" and result.answer.citations == [1]
        assert result.cited_sources()[0].source.endswith("k8s-运维手册.md")
        assert {"keyword", "generate", "first_token", "total"} <= set(result.timings)

        quiet = qa.ask("如何滚动重启 Deployment？", query_type="DOCS", mode="keyword", rerank=False, thinking=False)
        assert quiet.answer.thinking == "" and quiet.answer.text.endswith("[1]。")
        sent = [body["chat_template_kwargs"]["enable_thinking"] for _, _, body in server.requests]
        assert sent == [True, False]
    finally:
        server.close()


def test_local_qwen3_answers_with_thinking_switch(samples_app, make_app, tiny_embedding_dir, tiny_llm_dir,
                                                  monkeypatch) -> None:
    from askany.generation.backends.transformers import TransformersGenerator

    prompts: list[str] = []
    real_render = TransformersGenerator.render_prompt

    def recording_render(self, messages, enable_thinking):
        prompts.append(real_render(self, messages, enable_thinking))
        return prompts[-1]

    monkeypatch.setattr(TransformersGenerator, "render_prompt", recording_render)
    app = make_app(embedding_model=str(tiny_embedding_dir), llm_backend="transformers",
                   llm_model=str(tiny_llm_dir), llm_max_new_tokens=8)
    qa = QA(app)
    for thinking in (True, False):
        result = qa.ask("如何滚动重启 Deployment？", query_type="DOCS", mode="keyword", rerank=False,
                        thinking=thinking)
        assert result.answer.kind == "generated" or "no answer" in result.answer.notice
        assert "generate" in result.timings
    assert len(prompts) == 2 and "kubectl rollout restart" in prompts[0]
    assert "<think>\n\n</think>" not in prompts[0] and "<think>\n\n</think>" in prompts[1]
