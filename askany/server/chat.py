"""/v1/chat/completions: grounded answers for the RAG model ids, plain chat for the LLM's own id.

A RAG request is answered through the same QA path as the CLI and the page: the last user message
is the question, earlier turns are the conversation (follow-ups searched with their topic), the
model id names the query type and knowledge base, `@tag` in the question filters. Streaming sends
a first chunk at once, comment heartbeats while a CPU model thinks, and stops generating when the
client goes away.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from askany.core.errors import AskAnyError, ModelUnavailableError
from askany.server.catalog import RagModel, is_llm, rag_model
from askany.server.errors import APIError, error_body
from askany.server.schemas import ChatRequest
from askany.service import (
    GenerationOptions,
    QAResult,
    Service,
    history_for_model,
    message_text,
    retrieval_query,
    turns_from_messages,
)

router = APIRouter()
SOURCES_HEADING = "参考资料"
SNIPPET_CHARS = 200
THINK_TAG_TOKENS = 4  # <think>, </think> and the line breaks after them: generated, but not in the text


@dataclass
class Final:
    """What a finished answer adds after its text: a sources list, structured references, usage."""

    tail: str = ""
    references: list[dict[str, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    token_budget: int | None = None  # max new tokens when the model wrote the answer; None: no model did


def references(result: QAResult) -> list[dict[str, Any]]:
    return [{"number": s.number, "file": s.source, "title": s.title, "kb": s.kb,
             "heading": " > ".join(s.heading_path), "snippet": snippet(s.text), "is_faq": s.is_faq,
             "cited": s.number in result.answer.citations, "scores": s.stages, **s.location}
            for s in result.sources]


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "……"


def sources_tail(result: QAResult) -> str:
    """The cited sources as a short list under the answer, for clients that show only the text."""
    cited = [s for s in result.sources if s.number in result.answer.citations]
    if not cited:
        return ""
    lines = [f"[{s.number}] {s.title} ({s.source})" for s in cited]
    return f"\n\n{SOURCES_HEADING}：\n" + "\n".join(lines)


def rag_events(service: Service, rag: RagModel, question: str, messages: list[dict[str, Any]],
               thinking: bool | None, options: GenerationOptions) -> Iterator[tuple[str, Any]]:
    _, turns = turns_from_messages(messages)
    search_text, _ = retrieval_query(question, turns)
    result: QAResult | None = None
    for kind, value in service.ask_stream(search_text, query_type=rag.query_type,
                                          kbs=[rag.kb] if rag.kb else None, thinking=thinking,
                                          history=history_for_model(turns), generation=options):
        if kind == "done":
            result = value
        else:
            yield kind, value
    assert result is not None
    prompt = service.count_tokens(search_text + "".join(s.text for s in result.sources))
    budget = options.resolved(service.settings).max_tokens if result.answer.kind == "generated" else None
    yield "done", Final(sources_tail(result), references(result), [str(n) for n in result.notices], prompt, budget)


def llm_events(service: Service, messages: list[dict[str, Any]], thinking: bool | None,
               options: GenerationOptions) -> Iterator[tuple[str, Any]]:
    plain = [{"role": m["role"] if m["role"] in ("system", "user", "assistant") else "user",
              "content": message_text(m.get("content"))} for m in messages]
    yield from service.chat_stream(plain, thinking=thinking, generation=options)
    yield "done", Final(prompt_tokens=service.count_tokens("\n".join(m["content"] for m in plain)),
                        token_budget=options.resolved(service.settings).max_tokens)


class Completion:
    """One response's id, clock and token count, and the JSON shapes it is sent in."""

    def __init__(self, service: Service, model: str):
        self.service, self.model = service, model
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.text, self.thinking = "", ""
        self._completion_tokens: int | None = None

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}

    def completion_tokens(self) -> int:
        if self._completion_tokens is None:
            written = self.thinking + self.text
            self._completion_tokens = self.service.count_tokens(written) if written else 0
        return self._completion_tokens

    def usage(self, final: Final) -> dict[str, int]:
        completion = self.completion_tokens()
        return {"prompt_tokens": final.prompt_tokens, "completion_tokens": completion,
                "total_tokens": final.prompt_tokens + completion}

    def finish_reason(self, final: Final) -> str:
        """"length" when the model used up its max_tokens, as OpenAI says it (clients offer to continue).
        Counted again from the text, which lacks the think tags' few tokens: hence the slack."""
        if final.token_budget is None:
            return "stop"
        slack = THINK_TAG_TOKENS if self.thinking else 0
        return "length" if self.completion_tokens() >= final.token_budget - slack else "stop"

    def message(self, final: Final) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.text + final.tail}
        if self.thinking:
            message["reasoning_content"] = message["reasoning"] = self.thinking
        if final.references:
            message["references"] = final.references
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason(final)}],
                "usage": self.usage(final), "references": final.references, "notices": final.notices}


def _options(body: ChatRequest) -> GenerationOptions:
    try:
        return GenerationOptions(max_tokens=body.max_completion_tokens or body.max_tokens,
                                 temperature=body.temperature, top_p=body.top_p or None,  # 0: the default
                                 stop=body.stop_list())
    except ValueError as error:
        raise APIError(400, str(error), "invalid_request") from None


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request) -> Any:
    service: Service = request.app.state.service
    messages = [m.model_dump() for m in body.messages]
    options = _options(body)
    rag = rag_model(body.model)
    if rag is not None:
        question, _ = turns_from_messages(messages)
        if not question.strip():
            raise APIError(400, "The last message must be a user message holding the question", "invalid_messages",
                           "messages")
        await run_in_threadpool(service.check_question, kbs=[rag.kb] if rag.kb else None)
        events = rag_events(service, rag, question, messages, body.thinking(), options)
    elif is_llm(service, body.model):
        await run_in_threadpool(_require_llm, service)
        events = llm_events(service, messages, body.thinking(), options)
    else:
        raise APIError(404, f"Unknown model {body.model!r}: GET /v1/models lists the models this server offers",
                       "model_not_found", "model")
    completion = Completion(service, body.model)
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_sse(request, completion, events, usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    final = await run_in_threadpool(_collect, completion, events)
    return completion.message(final)


def _require_llm(service: Service) -> None:
    if service.generator() is None:
        raise ModelUnavailableError("llm", "No LLM is configured (LLM_BACKEND=none)")


def _collect(completion: Completion, events: Iterator[tuple[str, Any]]) -> Final:
    for kind, value in events:
        if kind == "done":
            return value
        if kind == "thinking":
            completion.thinking += value
        else:
            completion.text += value
    raise AssertionError("the answer ended without a result")


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


async def _sse(request: Request, completion: Completion, events: Iterator[tuple[str, Any]],
               include_usage: bool) -> AsyncIterator[bytes]:
    """The answer as server-sent events, the producer in a thread that stops when the client leaves."""
    heartbeat = request.app.state.service.settings.api_heartbeat_seconds
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in events:
                loop.call_soon_threadsafe(queue.put_nowait, item)
                if stop.is_set():
                    break
        except Exception as error:  # noqa: BLE001 - becomes an error event: headers are already sent
            loop.call_soon_threadsafe(queue.put_nowait, ("error", error))
        finally:
            events.close()  # stops the model at its next token
            loop.call_soon_threadsafe(queue.put_nowait, ("end", None))

    producer = threading.Thread(target=produce, name="askany-chat", daemon=True)
    producer.start()
    try:
        yield _event(completion.chunk({"role": "assistant", "content": ""}))
        while True:
            try:
                kind, value = await asyncio.wait_for(queue.get(), timeout=heartbeat)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield b": keep-alive\n\n"
                continue
            if kind == "end":
                return
            if kind == "error":
                status = 503 if isinstance(value, ModelUnavailableError) else 400 if isinstance(
                    value, AskAnyError) else 500
                message = str(value) if isinstance(value, AskAnyError) else f"Internal error ({type(value).__name__})"
                yield _event(error_body(status, message))
                yield b"data: [DONE]\n\n"
                return
            if kind == "thinking":
                completion.thinking += value
                yield _event(completion.chunk({"reasoning_content": value, "reasoning": value}))
            elif kind == "answer":
                completion.text += value
                yield _event(completion.chunk({"content": value}))
            else:  # done
                final: Final = value
                if final.tail:
                    yield _event(completion.chunk({"content": final.tail}))
                yield _event(completion.chunk({}, completion.finish_reason(final), references=final.references,
                                              notices=final.notices))
                if include_usage:
                    yield _event({**completion.chunk({}), "choices": [], "usage": completion.usage(final)})
                yield b"data: [DONE]\n\n"
    finally:
        stop.set()
