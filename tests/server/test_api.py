"""The OpenAI-compatible server, driven by real clients over loopback: the openai SDK, LangChain,
LlamaIndex, and request bodies as RAGFlow, Dify and OpenWebUI send them."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from askany.context import AskAny
from askany.core.config import load_settings
from askany.models.registry import ModelRegistry
from askany.service import Service
from tests.support.api_server import get, post, running
from tests.support.fixtures import empty_database

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "如何回滚发布？"


def make_service(pg_data_dir: Path, folder: Path, **overrides: object) -> Service:
    values: dict[str, object] = {"data_dir": pg_data_dir, "models_dir": folder / "models"}
    values.update(overrides)
    settings = load_settings(**values)
    return Service(app=AskAny(settings, ModelRegistry(settings)))


@pytest.fixture(scope="module")
def models(tiny_embedding_dir: Path, tiny_reranker_dir: Path, tiny_llm_dir: Path) -> dict[str, object]:
    return {"embedding_model": str(tiny_embedding_dir), "reranker_model": str(tiny_reranker_dir),
            "llm_backend": "transformers", "llm_model": str(tiny_llm_dir), "llm_max_new_tokens": 12}


@pytest.fixture(scope="module")
def server(pg_data_dir: Path, tmp_path_factory: pytest.TempPathFactory, models: dict) -> Iterator[str]:
    service = make_service(pg_data_dir, tmp_path_factory.mktemp("api"), **models)
    empty_database(service.app)  # vectors of other tests' models would be refused
    service.ingest([ROOT / "ingest" / "samples"], kb="api")
    with running(service) as base:
        yield base


@pytest.fixture(scope="module")
def client(server: str):
    from openai import OpenAI

    return OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)


def llm_id(server: str) -> str:
    return next(m["id"] for m in get(server, "/v1/models").json()["data"] if m["owned_by"] == "askany-llm")


# ------------------------------------------------------------------ models, health, paths

def test_models_lists_rag_ids_per_kb_and_the_three_models(client, server: str) -> None:
    ids = {m.id: m.owned_by for m in client.models.list().data}
    assert {"askany", "askany-faq", "askany-docs", "askany@api"} <= set(ids)
    assert sorted(ids.values()).count("askany-llm") == 1
    assert "askany-embedding" in ids.values() and "askany-reranker" in ids.values()
    listing = get(server, "/v1/models").json()
    assert listing["object"] == "list" and all(set(m) == {"id", "object", "created", "owned_by"}
                                               for m in listing["data"])


def test_paths_with_and_without_v1_and_doubled_slashes_reach_the_same_endpoint(server: str) -> None:
    bodies = [get(server, path).json() for path in ("/v1/models", "/models", "/v1//models", "//v1/models")]
    assert all(body == bodies[0] for body in bodies)
    health = get(server, "/health").json()
    assert health["status"] == "ok" and health["models"]["embedding"]["ok"] is True


# ------------------------------------------------------------------ embeddings

def test_embeddings_default_base64_and_float_agree(client) -> None:
    default = client.embeddings.create(model="bge-m3", input=["发布回滚", "", "数据库备份"])  # SDK asks base64
    floats = client.embeddings.create(model="text-embedding-3-small", input=["发布回滚", "", "数据库备份"],
                                      encoding_format="float")
    assert [d.index for d in default.data] == [0, 1, 2]
    a, b = np.array([d.embedding for d in default.data]), np.array([d.embedding for d in floats.data])
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine == pytest.approx(1.0, abs=1e-6)
    assert default.usage.prompt_tokens == default.usage.total_tokens > 3


def test_embeddings_raw_body_shapes(server: str) -> None:
    one = post(server, "/v1/embeddings", {"input": "单个字符串", "model": "x", "encoding_format": None}).json()
    assert one["object"] == "list" and len(one["data"]) == 1 and isinstance(one["data"][0]["embedding"], list)
    raw = post(server, "/v1/embeddings", {"input": ["a"], "encoding_format": "base64"}).json()
    vector = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert vector.shape == (len(one["data"][0]["embedding"]),)
    wrong = post(server, "/v1/embeddings", {"input": "a", "dimensions": 3})
    assert wrong.status_code == 400 and f"makes {vector.shape[0]}-dimensional" in wrong.json()["error"]["message"]
    tokens = post(server, "/v1/embeddings", {"input": [[101, 2023, 102]], "model": "x"})
    assert tokens.status_code == 400 and "check_embedding_ctx_length=False" in tokens.json()["error"]["message"]


def test_langchain_embeddings_work_and_its_default_token_ids_get_the_clear_400(server: str) -> None:
    from langchain_openai import OpenAIEmbeddings

    good = OpenAIEmbeddings(model="bge-m3", base_url=server + "/v1", api_key="x", check_embedding_ctx_length=False)
    vectors = good.embed_documents(["发布回滚", "数据库备份"])
    assert len(vectors) == 2 and len(vectors[0]) == len(good.embed_query("发布回滚"))
    # LangChain's default first tokenizes with tiktoken (whose vocabulary it downloads, so it cannot run
    # offline) and sends what it got: lists of token ids, replayed here as it sends them.
    replay = post(server, "/v1/embeddings", {"input": [[3922, 28037, 5486]], "model": "text-embedding-ada-002",
                                            "encoding_format": "base64"})
    assert replay.status_code == 400 and "check_embedding_ctx_length=False" in replay.json()["error"]["message"]


def test_llamaindex_openai_like_embedding(server: str) -> None:
    from llama_index.embeddings.openai_like import OpenAILikeEmbedding

    model = OpenAILikeEmbedding(model_name="bge-m3", api_base=server + "/v1", api_key="x")
    assert len(model.get_text_embedding("发布回滚")) == len(model.get_query_embedding("回滚"))


# ------------------------------------------------------------------ rerank

DOCS = ["发布失败时执行 kubectl rollout undo 回滚。", "数据库每天凌晨备份。", "年假十五天。"]


def test_rerank_jina_cohere_shape_top_n_null_returns_all_sorted(server: str) -> None:
    for path in ("/v1/rerank", "/rerank"):  # RAGFlow and Dify use either
        body = post(server, path, {"model": "bge-reranker-v2-m3", "query": QUESTION, "documents": DOCS,
                                   "top_n": None, "return_documents": True}).json()
        scores = [r["relevance_score"] for r in body["results"]]
        assert sorted(r["index"] for r in body["results"]) == [0, 1, 2] and scores == sorted(scores, reverse=True)
        assert all(r["document"]["text"] == DOCS[r["index"]] for r in body["results"])
        assert body["id"] and body["usage"]["total_tokens"] > 0
    top = post(server, "/v1/rerank", {"query": QUESTION, "documents": [{"text": d} for d in DOCS], "top_n": 1}).json()
    assert len(top["results"]) == 1 and top["results"][0]["index"] == body["results"][0]["index"]


def test_rerank_tei_shape(server: str) -> None:
    probabilities = post(server, "/rerank", {"query": QUESTION, "texts": DOCS, "truncate": True}).json()
    raw = post(server, "/rerank", {"query": QUESTION, "texts": DOCS, "raw_scores": True}).json()
    assert [r["index"] for r in probabilities] == [r["index"] for r in raw]
    assert all(0 <= r["score"] <= 1 for r in probabilities)
    assert all("text" not in r for r in probabilities)


# ------------------------------------------------------------------ chat

def test_rag_chat_not_streaming_cites_and_returns_references(client) -> None:
    # Documents only: AUTO may answer from the samples' FAQ, whose answers are not generated.
    response = client.chat.completions.create(model="askany-docs@api",
                                              messages=[{"role": "user", "content": QUESTION}])
    message = response.choices[0].message
    assert response.object == "chat.completion" and response.choices[0].finish_reason in ("stop", "length")
    generated = not response.model_extra["notices"]  # else an extracted answer (the tiny model wrote none)
    if generated and response.usage.completion_tokens >= 12:  # LLM_MAX_NEW_TOKENS: the model wrote them all
        assert response.choices[0].finish_reason == "length"
    assert isinstance(message.content, str) and message.content
    references = response.model_extra["references"]
    assert references and all(r["kb"] == "api" for r in references)
    assert {"number", "file", "title", "heading", "snippet", "scores"} <= set(references[0])
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_rag_chat_streaming_with_usage_and_thinking(client) -> None:
    stream = client.chat.completions.create(
        model="askany-docs@api", messages=[{"role": "user", "content": QUESTION}], stream=True,
        stream_options={"include_usage": True}, extra_body={"chat_template_kwargs": {"enable_thinking": True}})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason in ("stop", "length"))
    assert final.model_extra["references"]
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage.total_tokens > 0
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    thinking = [c.choices[0].delta.model_extra.get("reasoning_content") for c in chunks if c.choices]
    assert isinstance(text, str) and "<think>" not in text
    assert any(thinking) or text  # a random-weight model may or may not close its think block


def test_follow_up_is_searched_with_its_topic(server: str) -> None:
    body = {"model": "askany-docs@api", "messages": [
        {"role": "system", "content": "你是助手"}, {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": "执行回滚命令 [1]"}, {"role": "user", "content": "那第二步呢？"}],
        "user": {"id": "u1"}, "drop_params": True, "tools": [], "max_tokens": 5}
    reply = post(server, "/v1/chat/completions", body).json()
    assert any("回滚" in r["snippet"] or "发布" in r["title"] for r in reply["references"])


def test_connection_check_bodies_as_dify_and_openwebui_send_them(server: str) -> None:
    for body in ({"model": "askany", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 5},
                 {"model": "askany", "messages": [{"role": "user", "content": [{"type": "text", "text": "你好"}]}],
                  "stream": False, "max_completion_tokens": 5, "temperature": 0.2, "top_p": 0.9}):
        response = post(server, "/v1/chat/completions", body)
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["role"] == "assistant"


def test_finish_reason_says_length_when_max_tokens_ran_out(client, server: str) -> None:
    asked = {"model": llm_id(server), "max_tokens": 3, "messages": [{"role": "user", "content": "写一首长诗"}]}
    response = client.chat.completions.create(**asked)
    assert response.choices[0].finish_reason == "length" and response.usage.completion_tokens >= 3
    chunks = list(client.chat.completions.create(**asked, stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    faq = client.chat.completions.create(model="askany-faq@api", max_tokens=3,
                                         messages=[{"role": "user", "content": "VPN 连不上怎么办？"}])
    assert faq.choices[0].finish_reason == "stop"  # an FAQ answer is not cut, whatever max_tokens says


def test_plain_chat_with_the_llm_id(client, server: str) -> None:
    response = client.chat.completions.create(model=llm_id(server), max_tokens=4,
                                              messages=[{"role": "user", "content": "你好"}])
    assert response.choices[0].message.content is not None
    assert "references" not in (response.model_extra or {}) or not response.model_extra["references"]


def test_langchain_chat_openai_streaming(server: str) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model="askany@api", base_url=server + "/v1", api_key="x", max_retries=0, streaming=True)
    pieces = list(chat.stream(QUESTION))
    assert pieces and isinstance("".join(str(p.content) for p in pieces), str)


def test_llamaindex_openai_like_llm(server: str) -> None:
    from llama_index.llms.openai_like import OpenAILike

    llm = OpenAILike(model="askany@api", api_base=server + "/v1", api_key="x", is_chat_model=True,
                     context_window=4096, max_tokens=8)
    assert isinstance(llm.complete(QUESTION).text, str)
    assert list(llm.stream_complete(QUESTION))


# ------------------------------------------------------------------ errors

def test_errors_are_openai_shaped_with_the_right_status(server: str) -> None:
    def error(response: httpx.Response, status: int) -> str:
        assert response.status_code == status, response.text
        body = response.json()["error"]
        assert set(body) >= {"message", "type", "code"} and "Traceback" not in body["message"]
        return body["message"]

    assert "Invalid request body" in error(httpx.post(server + "/v1/chat/completions", content=b"{not json",
                                                      headers={"content-type": "application/json"}), 400)
    assert "messages" in error(post(server, "/v1/chat/completions", {"model": "askany"}), 400)
    assert "GET /v1/models" in error(post(server, "/v1/chat/completions", {
        "model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}), 404)
    assert "API_MAX_BODY_MB" in error(httpx.post(server + "/v1/embeddings", content=b"x" * (17 * 1024 * 1024),
                                                 headers={"content-type": "application/json"}), 413)
    assert "API_MAX_INPUTS" in error(post(server, "/v1/embeddings", {"input": ["a"] * 5000}), 413)
    assert "No such endpoint" in error(get(server, "/v1/nothing"), 404)
    lone = "\\ud800"  # a JSON escape no text can hold
    for path, body in (("/v1/embeddings", f'{{"input": ["好", "{lone}"]}}'),
                       ("/v1/rerank", f'{{"query": "{lone}", "documents": ["a"]}}'),
                       ("/v1/chat/completions", f'{{"model": "askany@api", "messages": [{{"role": "user", '
                                                f'"content": "回滚{lone}"}}]}}'),
                       ("/v1/chat/completions", f'{{"model": "{llm_id(server)}", "messages": [{{"role": "user", '
                                                f'"content": [{{"type": "text", "text": "{lone}"}}]}}]}}')):
        message = error(httpx.post(server + path, content=body.encode(), headers={"content-type": "application/json"}),
                        400)
        assert "lone surrogate" in message, (path, message)
    assert get(server, "/v1/models").status_code == 200  # and it keeps serving


def test_a_missing_role_answers_503_while_the_others_work(pg_data_dir: Path, tmp_path: Path, models: dict) -> None:
    service = make_service(pg_data_dir, tmp_path, **{**models, "reranker_model": str(tmp_path / "none")})
    with running(service) as base:
        down = post(base, "/v1/rerank", {"query": "q", "documents": ["a"]})
        assert down.status_code == 503 and "reranker" in down.json()["error"]["message"].lower()
        assert post(base, "/v1/embeddings", {"input": "a"}).status_code == 200


# ------------------------------------------------------------------ auth

def test_api_key_matrix(pg_data_dir: Path, tmp_path: Path, models: dict) -> None:
    service = make_service(pg_data_dir, tmp_path, **models, api_key="k-one,k-two")
    with running(service) as base:
        body = {"input": "a"}
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic k-one"},
                        {"Authorization": "Bearer wrong"}, {"Authorization": "k-one"}):
            response = post(base, "/v1/embeddings", body, headers=headers)
            assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
        for key in ("k-one", "k-two"):
            assert post(base, "/v1/embeddings", body, headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert get(base, "/health").status_code == 200  # health stays open for load balancers


# ------------------------------------------------------------------ AskAny as another AskAny's LLM

def test_askany_llm_backend_openai_against_a_second_askany(server: str, pg_data_dir: Path, tmp_path: Path,
                                                           tiny_embedding_dir: Path) -> None:
    remote = make_service(pg_data_dir, tmp_path, embedding_model=str(tiny_embedding_dir),
                          reranker_enabled=False, llm_backend="openai", llm_api_base=server + "/v1",
                          llm_api_model=llm_id(server), llm_max_new_tokens=6, llm_context_window=4096)
    result = remote.ask(QUESTION, kbs=["api"], query_type="DOCS")
    assert result.answer.kind == "generated", result.answer.notice
    assert result.sources and all(s.kb == "api" for s in result.sources)


# ------------------------------------------------------------------ streaming lifecycle

def test_heartbeats_and_a_client_that_leaves_stops_its_generation(pg_data_dir: Path, tmp_path: Path,
                                                                  models: dict) -> None:
    import time

    service = make_service(pg_data_dir, tmp_path, **{**models, "llm_max_new_tokens": 4000},
                           api_heartbeat_seconds=0.001)
    with running(service) as base:
        model = llm_id(base)
        body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "写一篇长文"}]}
        lines = []
        with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=60) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                lines.append(line)
                if sum(line.startswith("data: {") for line in lines) >= 3:
                    break  # the client goes away with most of the 4000 tokens unwritten
        assert lines[0].startswith("data: ") and '"role": "assistant"' in lines[0]
        assert ": keep-alive" in lines  # sent while the model loaded and before its first token
        lock = service.generator()._lock
        deadline = time.monotonic() + 30
        while lock.locked() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not lock.locked(), "generation went on after the client left"
        done = post(base, "/v1/chat/completions", {"model": model, "max_tokens": 2,
                                                   "messages": [{"role": "user", "content": "hi"}]})
        assert done.status_code == 200


def test_the_page_is_served_at_the_root_next_to_the_api(pg_data_dir: Path, tmp_path: Path) -> None:
    service = make_service(pg_data_dir, tmp_path, embedding_enabled=False, reranker_enabled=False,
                           llm_backend="none")
    with running(service, with_page=True) as base:
        page = get(base, "/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert get(base, "/v1/models").json()["object"] == "list"


def test_only_loopback_addresses_count_as_private() -> None:
    from askany.server.app import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")
