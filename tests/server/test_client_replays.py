"""Requests exactly as RAGFlow, Dify and OpenWebUI send them, replayed against a real AskAny server.

Each replay was written from the client's own source (named above each test): the URL it builds from
the base URL a user types, its JSON body, its headers, and then only the response fields that client
reads, read the way it reads them. The clients are not installed here; these are our own replays.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import numpy as np
import pytest

from tests.server.test_api import make_service
from tests.support.api_server import running
from tests.support.fixtures import empty_database

ROOT = Path(__file__).resolve().parents[2]
KB = "replay"
RAG = f"askany@{KB}"
QUESTION = "如何回滚发布？"
DOCS = ["发布失败时执行 kubectl rollout undo 回滚。", "数据库每天凌晨备份。", "年假十五天。"]
KEY = "sk-replay"  # what a user types into the client's API key box; this server has no API_KEY

# The headers the openai Python SDK puts on every request (RAGFlow's OpenAI-style classes use it).
SDK_HEADERS = {
    "Accept": "application/json", "Content-Type": "application/json", "User-Agent": "OpenAI/Python 1.99.9",
    "X-Stainless-Lang": "python", "X-Stainless-Package-Version": "1.99.9", "X-Stainless-OS": "Linux",
    "X-Stainless-Arch": "x64", "X-Stainless-Runtime": "CPython", "X-Stainless-Runtime-Version": "3.12.11",
    "X-Stainless-Retry-Count": "0", "X-Stainless-Read-Timeout": "600", "Authorization": f"Bearer {KEY}",
}
# OpenWebUI with ENABLE_FORWARD_USER_INFO_HEADERS=true adds these (names percent-quoted).
OPENWEBUI_USER_HEADERS = {"X-OpenWebUI-User-Name": "Zhang%20San", "X-OpenWebUI-User-Id": "u-1",
                          "X-OpenWebUI-User-Email": "zhang@example.com", "X-OpenWebUI-User-Role": "admin"}


@pytest.fixture(scope="module")
def server(pg_data_dir: Path, tmp_path_factory: pytest.TempPathFactory, tiny_embedding_dir: Path,
           tiny_reranker_dir: Path, tiny_llm_dir: Path) -> Iterator[str]:
    service = make_service(pg_data_dir, tmp_path_factory.mktemp("replay"), embedding_model=str(tiny_embedding_dir),
                           reranker_model=str(tiny_reranker_dir), llm_backend="transformers",
                           llm_model=str(tiny_llm_dir), llm_max_new_tokens=12)
    empty_database(service.app)  # vectors of other tests' models would be refused
    service.ingest([ROOT / "ingest" / "samples"], kb=KB)
    with running(service) as base:
        yield base


@pytest.fixture(scope="module")
def model_ids(server: str) -> dict[str, str]:
    listing = httpx.get(server + "/v1/models", timeout=60).json()["data"]
    return {m["owned_by"]: m["id"] for m in listing if m["owned_by"] != "askany"}


def post(url: str, body: object, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=json.dumps(body, ensure_ascii=False).encode(), headers=headers, timeout=120)


def stream_text(url: str, body: object, headers: dict[str, str]) -> tuple[httpx.Response, str]:
    """The raw body of a streamed reply, as it arrived."""
    with httpx.stream("POST", url, content=json.dumps(body).encode(), headers=headers, timeout=120) as response:
        return response, response.read().decode()


def sdk_sse_events(text: str) -> list[dict[str, Any]]:
    """What the openai SDK's SSE decoder yields: comment lines skipped, data lines joined, stop at [DONE],
    an event with "error" raised, every event validated as a ChatCompletionChunk."""
    from openai.types.chat import ChatCompletionChunk

    events, data = [], []
    for line in text.split("\n") + [""]:
        if line == "":
            if data:
                payload = "\n".join(data)
                data = []
                if payload.startswith("[DONE]"):
                    return events
                event = json.loads(payload)
                assert not event.get("error"), event
                ChatCompletionChunk.model_validate(event)
                events.append(event)
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    raise AssertionError("the stream ended without data: [DONE]")


def raw_request(method: str, url: str, body: object, headers: dict[str, str]) -> tuple[int, Any]:
    """A request through the standard library, as `requests` and aiohttp send it: header values go out as
    given (httpx refuses the 'Bearer ' with nothing after it that OpenWebUI sends with an empty key)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        data = None if body is None else json.dumps(body).encode()
        connection.request(method, parts.path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


# ================================================================== RAGFlow

def ragflow_ensure_v1(url: str) -> str:
    """rag/utils/url_utils.py ensure_v1: append /v1 unless some /v<digit> segment is there."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if re.search(r"/v\d+(?:/|$)", path + "/"):
        return url
    return f"{parts.scheme}://{parts.netloc}{path}/v1"


# infiniflow/ragflow rag/llm/embedding_model.py: OpenAI_APIEmbed ("OpenAI-API-Compatible", "VLLM") calls
# OpenAIEmbed._call: client.embeddings.create(input=batch of <=16, model=name.split("___")[0],
# encoding_format="float", extra_body={"drop_params": True}); LocalAIEmbed/XinferenceEmbed leave
# encoding_format out, so the SDK asks for base64 and decodes it. Read: data sorted by index ->
# .embedding, usage.total_tokens. Model-add check (api/apps/services/provider_api_service.py):
# encode(["Test if the api key is available"]) and a non-empty first vector.
@pytest.mark.parametrize("factory", ["OpenAI-API-Compatible", "LocalAI"])
def test_ragflow_embeddings(server: str, model_ids: dict[str, str], factory: str) -> None:
    base = ragflow_ensure_v1(server)  # the user typed http://host:port
    name = model_ids["askany-embedding"]
    texts = ["Test if the api key is available"], ["发布回滚", "数据库备份", "k8s 运维手册"]
    for batch in texts:
        body: dict[str, Any] = {"input": batch, "model": f"{name}___OpenAI-API".split("___")[0]}
        if factory == "OpenAI-API-Compatible":
            body.update(encoding_format="float", drop_params=True)
        else:
            body["encoding_format"] = "base64"  # the SDK's default when the caller gives none
        headers = SDK_HEADERS if factory != "LocalAI" else {**SDK_HEADERS, "Authorization": "Bearer empty"}
        response = post(base + "/embeddings", body, headers)
        assert response.status_code == 200, response.text
        reply = response.json()
        data = sorted(reply["data"], key=lambda d: d.get("index", 0))
        if factory == "LocalAI":
            vectors = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="float32").tolist() for d in data]
        else:
            vectors = [d["embedding"] for d in data]
        assert len(vectors) == len(batch) and len(vectors[0]) > 0
        assert len({len(v) for v in vectors}) == 1 and all(isinstance(x, float) for x in vectors[0])
        assert reply["usage"]["total_tokens"] > 0


# infiniflow/ragflow rag/llm/rerank_model.py: OpenAI_APIRerank posts to base.rstrip("/") + "/rerank"
# (urljoin), LocalAIRerank to urljoin(base, "/rerank") (which drops /v1), XInferenceRerank to
# urljoin(base, "/v1/rerank") with "return_documents"/"return_len" as the strings "true". Bodies carry
# model, query, documents (+ top_n=len(documents) except Xinference); read: results[].index and
# .relevance_score into a score per document. Model-add check: similarity("What's the weather?",
# ["Is it sunny today?"]).
@pytest.mark.parametrize("factory", ["OpenAI-API-Compatible", "LocalAI", "Xinference"])
def test_ragflow_rerank(server: str, model_ids: dict[str, str], factory: str) -> None:
    name = model_ids["askany-reranker"]
    if factory == "OpenAI-API-Compatible":
        url = urljoin(f"{server}/v1/", "rerank")
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    elif factory == "LocalAI":
        url = urljoin(f"{server}/v1", "/rerank")
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    else:
        url = urljoin(server, "/v1/rerank")
        headers = {"Content-Type": "application/json", "accept": "application/json", "Authorization": f"Bearer {KEY}"}
    for query, texts in (("What's the weather?", ["Is it sunny today?"]), (QUESTION, DOCS)):
        if factory == "Xinference":
            body: dict[str, Any] = {"model": name, "query": query, "return_documents": "true", "return_len": "true",
                                    "documents": texts}
        else:
            body = {"model": name, "query": query, "documents": texts, "top_n": len(texts)}
        response = post(url, body, headers)
        assert response.status_code == 200, response.text
        rank = np.full(len(texts), np.nan)
        for d in response.json().get("results", []):
            rank[d["index"]] = d["relevance_score"]
        assert not np.isnan(rank).any(), "every document needs a score"
        assert ((rank >= 0) & (rank <= 1)).all()


# infiniflow/ragflow rag/llm/chat_model.py: OpenAI_APIChat -> Base._async_chat_streamly: AsyncOpenAI
# (base_url=ensure_v1(url)).chat.completions.create(model, messages (system first), stream=True, **gen_conf)
# where gen_conf is the dialog's llm_setting minus max_tokens (_clean_conf). Read per chunk: skip chunks
# without choices, delta.content, delta.reasoning_content or .reasoning (wrapped in <think>),
# usage.total_tokens, finish_reason. Model-add check (provider_api_service.py check_streamly): "Hi" with
# temperature 0.9 passes on the first non-empty text without "**ERROR**".
def test_ragflow_chat_stream(server: str) -> None:
    url = ragflow_ensure_v1(server) + "/chat/completions"
    headers = {**SDK_HEADERS, "X-Stainless-Async": "async:asyncio"}
    check = {"model": RAG, "messages": [{"role": "user", "content": "Hi"}], "stream": True, "temperature": 0.9}
    dialog = {"model": RAG, "messages": [
        {"role": "system", "content": "你是一个智能助手，请总结知识库的内容来回答问题。"},
        {"role": "user", "content": QUESTION}], "stream": True,
        "temperature": 0.1, "top_p": 0.3, "frequency_penalty": 0.7, "presence_penalty": 0.4}
    for body in (check, dialog):
        response, text = stream_text(url, body, headers)
        assert response.status_code == 200 and "text/event-stream" in response.headers["content-type"]
        answers, finish, reasoning = [], None, False
        for chunk in sdk_sse_events(text):
            if not chunk["choices"]:
                continue
            delta = chunk["choices"][0]["delta"]
            thought = delta.get("reasoning_content") or delta.get("reasoning")
            if thought:
                answers.append(("" if reasoning else "<think>") + thought + "</think>")
                reasoning = True
            else:
                reasoning = False
                answers.append(delta.get("content") or "")
            finish = chunk["choices"][0].get("finish_reason") or finish
        assert any(a and "**ERROR**" not in a for a in answers), text
        assert finish in ("stop", "length")  # RAGFlow adds its "continue?" line to a "length" answer


# ================================================================== Dify

# langgenius/dify-plugin-sdks src/dify_plugin/interfaces/model/openai_compatible/llm.py
# _request_credentials_validation (used by langgenius/dify-official-plugins
# models/openai_api_compatible/models/llm/llm.py validate_credentials): POST
# urljoin(endpoint_url.rstrip("/") + "/", "chat/completions") with {"model", "max_tokens": 5,
# "messages": [{"role": "user", "content": "ping"}]}, Content-Type (+ Bearer key when set); "stream_mode_auth"
# sends stream=True with max_tokens 10. Read: status 200 and, not streamed, object == "chat.completion".
@pytest.mark.parametrize("endpoint", ["/v1", "/v1/"])
def test_dify_llm_credentials_validation(server: str, model_ids: dict[str, str], endpoint: str) -> None:
    url = urljoin(f"{(server + endpoint).rstrip('/')}/", "chat/completions")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    for model in (RAG, model_ids["askany-llm"]):
        body = {"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "ping"}]}
        response = httpx.post(url, json=body, headers=headers, timeout=120)
        assert response.status_code == 200, response.text
        assert (response.json().get("object") or "chat.completion") == "chat.completion"
    response, _ = stream_text(url, {"model": RAG, "max_tokens": 10, "stream": True,
                                    "messages": [{"role": "user", "content": "ping"}]}, headers)
    assert response.status_code == 200


# langgenius/dify-official-plugins models/openai_api_compatible/models/llm/llm.py _invoke with
# compatibility_mode "extended" and thinking off: chat_template_kwargs {enable_thinking, thinking},
# top-level thinking {"type": "disabled"} and enable_thinking, stream_options include_usage, user; then the
# SDK's _generate (dify-plugin-sdks .../openai_compatible/llm.py) posts with Accept-Charset and reads
# the stream split on blank lines: ":" comments skipped, "data:" removed, [DONE] skipped, an "error" without
# "choices" raised, usage kept, chunks with no choices skipped, delta content / reasoning_content.
def test_dify_chat_stream(server: str) -> None:
    url = urljoin(f"{server}/v1/", "chat/completions")
    headers = {"Content-Type": "application/json", "Accept-Charset": "utf-8", "Authorization": f"Bearer {KEY}"}
    body = {"model": RAG, "stream": True, "temperature": 0.7, "top_p": 1.0,
            "chat_template_kwargs": {"enable_thinking": False, "thinking": False},
            "thinking": {"type": "disabled"}, "enable_thinking": False, "stream_options": {"include_usage": True},
            "messages": [{"role": "system", "content": "Use the knowledge base."},
                         {"role": "user", "content": QUESTION}], "user": "dify-user-1"}
    response, text = stream_text(url, body, headers)
    assert response.status_code == 200
    usage, content, finish = None, "", None
    for raw in text.split("\n\n"):
        chunk = raw.strip()
        if not chunk or chunk.startswith(":"):
            continue
        decoded = chunk.removeprefix("data:").lstrip()
        if decoded == "[DONE]":
            continue
        event = json.loads(decoded)
        assert not (event.get("error") and event.get("choices") is None), event
        usage = event.get("usage") or usage
        if not event["choices"]:
            continue
        finish = event["choices"][0].get("finish_reason")
        delta = event["choices"][0]["delta"]
        assert not (delta.get("reasoning_content") or delta.get("reasoning")), "thinking was turned off"
        content += delta.get("content") or ""
    assert content and finish in ("stop", "length")  # the tiny model often writes its whole budget
    assert usage and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


# langgenius/dify-official-plugins models/openai_api_compatible/models/text_embedding/text_embedding.py
# _embed_in_batches: POST endpoint_url.rstrip("/") + "/embeddings" with {"model", "input": batch}
# (+ "encoding_format": "float" only if configured) and headers Content-Type plus Authorization, which
# is "" when no key was entered; validate_credentials embeds ["ping"]. Read: result["data"][i]["embedding"]
# in the order given (not by index) and usage.prompt_tokens or usage.total_tokens.
@pytest.mark.parametrize("api_key", ["", KEY])
def test_dify_embeddings(server: str, model_ids: dict[str, str], api_key: str) -> None:
    url = f"{(server + '/v1/').rstrip('/')}/embeddings"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}" if api_key else ""}
    single = None
    for batch in (["ping"], ["数据库备份", "ping", "发布回滚"]):
        response = post(url, {"model": model_ids["askany-embedding"], "input": batch}, headers)
        assert response.status_code == 200, response.text
        result = response.json()
        vectors = [data["embedding"] for data in result["data"]]
        assert len(vectors) == len(batch)
        usage = result.get("usage") or {}
        assert (usage.get("prompt_tokens") or usage.get("total_tokens") or 0) > 0
        if single is None:
            single = vectors[0]
        else:  # "ping" is second in the batch: the vectors come back in input order
            assert np.allclose(vectors[1], single, atol=1e-5)


# langgenius/dify-official-plugins models/openai_api_compatible/models/rerank/rerank.py _invoke: POST
# endpoint_url.rstrip("/") + "/rerank" with {"model", "query", "documents", "top_n"}, Content-Type and a
# Bearer key only when one is set; validate_credentials sends three English passages, top_n=3,
# score_threshold=0.8 (applied client-side). Read: results[].get("index"), .get("relevance_score").
def test_dify_rerank(server: str, model_ids: dict[str, str]) -> None:
    url = f"{(server + '/v1').rstrip('/')}/rerank"
    docs = ["Carson City is the capital city of the American state of Nevada.",
            "The Commonwealth of the Northern Mariana Islands is a group of islands in the Pacific Ocean.",
            "Washington, D.C. is the capital city and federal district of the United States."]
    for query, texts, top_n in (("What is the capital of the United States?", docs, 3), (QUESTION, DOCS, 2)):
        body = {"model": model_ids["askany-reranker"], "query": query, "documents": texts, "top_n": top_n}
        response = post(url, body, {"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        found = [(item.get("index", 0), item.get("relevance_score", 0.0)) for item in response.json()["results"]]
        assert len(found) == top_n and all(index < len(texts) for index, _ in found)
        assert len({index for index, _ in found}) == top_n
        assert all(isinstance(score, float) and 0 <= score <= 1 for _, score in found)


# ================================================================== OpenWebUI

# open-webui/open-webui backend/open_webui/routers/openai.py send_get_request / get_models /
# verify_connection: GET f"{url}/models" (url is the connection's base, e.g. http://host:port/v1) with
# Content-Type and f"Bearer {key}" ("Bearer " for an empty key; send_get_request leaves it out then).
# Read: response["data"] (or a bare list), models with an "id" or "name", then model.get("name", model["id"]).
def test_openwebui_models_list(server: str, model_ids: dict[str, str]) -> None:
    for headers in ({"Content-Type": "application/json", "Authorization": f"Bearer {KEY}", **OPENWEBUI_USER_HEADERS},
                    {"Content-Type": "application/json", "Authorization": "Bearer "}, {}):
        status, payload = raw_request("GET", f"{server}/v1/models", None, headers)
        assert status == 200, payload
        models = payload if isinstance(payload, list) else payload.get("data", [])
        shown = {m.get("name", m["id"]) for m in models if m.get("id") or m.get("name")}
        assert {"askany", "askany-docs", "askany-faq", RAG, model_ids["askany-llm"]} <= shown


# open-webui/open-webui backend/open_webui/routers/openai.py generate_chat_completion: POST
# f"{url}/chat/completions" with the chat (metadata popped, max_completion_tokens turned into max_tokens
# for non-OpenAI hosts), Content-Type, Bearer key and the X-OpenWebUI-User-* / Chat-Id headers (plus
# stream_options include_usage, which some OpenWebUI versions add to streamed chats). The reply is proxied
# as a stream only if its Content-Type has "text/event-stream"; backend/open_webui/utils/middleware.py
# then reads each "data: " line as JSON: choices[0].delta.content (reasoning_content / reasoning), usage.
def test_openwebui_chat_stream(server: str) -> None:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}", **OPENWEBUI_USER_HEADERS,
               "X-OpenWebUI-Chat-Id": "c-1"}
    body = {"stream": True, "model": RAG, "stream_options": {"include_usage": True}, "temperature": 0.8,
            "max_tokens": 64, "messages": [
                {"role": "system", "content": "回答要简洁。"}, {"role": "user", "content": QUESTION},
                {"role": "assistant", "content": "执行 kubectl rollout undo [1]"},
                {"role": "user", "content": [{"type": "text", "text": "那第二步呢？"}]}]}
    response, text = stream_text(f"{server}/v1/chat/completions", body, headers)
    assert response.status_code == 200 and "text/event-stream" in response.headers.get("Content-Type", "")
    content, usage, done = "", None, False
    for line in text.split("\n"):
        if not line.strip() or not line.startswith("data: "):
            continue
        data = line[len("data: "):]
        if data.strip() == "[DONE]":
            done = True
            continue
        event = json.loads(data)
        usage = event.get("usage") or usage
        choices = event.get("choices", [])
        if choices:
            delta = choices[0].get("delta", {})
            content += delta.get("content") or ""
    assert done and content
    assert usage and usage["total_tokens"] > 0


# open-webui/open-webui backend/open_webui/retrieval/utils.py agenerate_openai_batch_embeddings (engine
# "openai"): POST f"{RAG_OPENAI_API_BASE_URL}/embeddings" with {"input": texts, "model"}, Content-Type and
# Authorization f"Bearer {key}" (so "Bearer " with the default empty key). Read: [item["embedding"] for
# item in data["data"]], in order.
def test_openwebui_embeddings(server: str, model_ids: dict[str, str]) -> None:
    url = f"{server}/v1/embeddings"
    texts = ["发布回滚", "数据库备份"]
    body = {"input": texts, "model": model_ids["askany-embedding"]}
    response = post(url, body, {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}",
                                **OPENWEBUI_USER_HEADERS})
    assert response.status_code == 200, response.text
    vectors = [item["embedding"] for item in response.json()["data"]]
    status, data = raw_request("POST", url, {"input": texts[::-1], "model": model_ids["askany-embedding"]},
                            {"Content-Type": "application/json", "Authorization": "Bearer "})
    assert status == 200, data
    reversed_vectors = [item["embedding"] for item in data["data"]]
    assert len(vectors) == 2 and np.allclose(vectors, reversed_vectors[::-1], atol=1e-5)


# open-webui/open-webui backend/open_webui/retrieval/models/external.py ExternalReranker.predict: POST to the
# configured URL as given (default http://localhost:8080/v1/rerank) with {"model", "query", "documents",
# "top_n": len(documents)}, Content-Type and f"Bearer {api_key}". Read: results sorted by index ->
# [relevance_score], matched to the documents by position, so every document needs its result.
def test_openwebui_external_rerank(server: str, model_ids: dict[str, str]) -> None:
    url = f"{server}/v1/rerank"
    body = {"model": model_ids["askany-reranker"], "query": QUESTION, "documents": DOCS, "top_n": len(DOCS)}
    for api_key in (KEY, ""):
        status, data = raw_request("POST", url, body, {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"})
        assert status == 200, data
        assert "results" in data
        scores = [r["relevance_score"] for r in sorted(data["results"], key=lambda x: x["index"])]
        assert len(scores) == len(DOCS) and all(isinstance(s, float) for s in scores)
