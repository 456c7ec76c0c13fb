"""The remote backend: an OpenAI-compatible chat server (vLLM, SGLang, llama.cpp, Ollama) through the `openai` SDK.

Thinking is switched with vLLM's ``chat_template_kwargs`` (sent as extra body
fields, so it reaches the server unchanged). Servers that return the reasoning
separately (``delta.reasoning_content`` or ``delta.reasoning``) have it wrapped in
``<think>…</think>`` here, so the same splitter handles both styles. Every
failure becomes one ModelUnavailableError sentence naming the server and the fix.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import openai

from askany.core.config import Settings
from askany.core.errors import ModelUnavailableError
from askany.core.text import estimate_tokens
from askany.generation.backends import DEFAULT_API_CONTEXT_WINDOW, GenerationOptions
from askany.generation.prompt import Message
from askany.generation.thinking import THINK_CLOSE, THINK_OPEN

log = logging.getLogger(__name__)

#: The SDK refuses to build a client without a key; this one is never sent (see `_auth_headers`).
_NO_KEY = "no-key"


class OpenAIGenerator:
    """A streaming chat-completions client for an OpenAI-compatible server."""

    def __init__(self, settings: Settings, http_client: Any = None):
        """`http_client` (an httpx client of the SDK's flavour) replaces the SDK's own: tests, proxies."""
        self.settings = settings
        self.base = settings.llm_api_base.rstrip("/")
        self.model = settings.llm_api_model or settings.llm_model
        seconds = settings.llm_api_timeout_seconds
        # The key is always passed explicitly: otherwise the SDK would read OPENAI_API_KEY from the
        # environment and send a real OpenAI key to whatever server LLM_API_BASE names.
        # LLM_API_RETRIES follows the rule of the other roles' servers (askany/models/remote.py), which
        # is the SDK's own: 408/429/5xx, timeouts and dropped connections, with backoff or Retry-After.
        # The SDK retries only the request, never a stream that has begun, so no reply is sent twice.
        self.client = openai.OpenAI(
            base_url=self.base, api_key=settings.llm_api_key or _NO_KEY,
            timeout=openai.Timeout(seconds, connect=min(seconds, 10.0)), max_retries=settings.llm_api_retries,
            http_client=http_client)

    @property
    def context_window(self) -> int:
        return self.settings.llm_context_window or DEFAULT_API_CONTEXT_WINDOW

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def request_body(self, messages: list[Message], enable_thinking: bool,
                     options: GenerationOptions | None = None) -> dict[str, Any]:
        """The JSON body the server receives (the SDK sends `chat_template_kwargs` as an extra field)."""
        options = (options or GenerationOptions()).resolved(self.settings)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
            "chat_template_kwargs": {"enable_thinking": enable_thinking},
        }
        if options.stop:
            body["stop"] = options.stop
        return body

    def _auth_headers(self) -> dict[str, Any]:
        """No Authorization header at all without LLM_API_KEY, as servers started without a key expect."""
        return {} if self.settings.llm_api_key else {"Authorization": openai.Omit()}

    def stream(self, messages: list[Message], enable_thinking: bool,
               options: GenerationOptions | None = None) -> Iterator[str]:
        """Request a streamed completion and yield text pieces from its chunks."""
        body = self.request_body(messages, enable_thinking, options)
        extra = {"chat_template_kwargs": body.pop("chat_template_kwargs")}
        seconds = self.settings.llm_api_timeout_seconds
        try:
            chunks = self.client.chat.completions.create(**body, extra_body=extra,
                                                         extra_headers=self._auth_headers())
            with chunks:
                yield from self._pieces(chunks)
        except openai.APITimeoutError:
            raise ModelUnavailableError(
                "llm", f"The LLM server at LLM_API_BASE={self.base} did not answer within "
                       f"LLM_API_TIMEOUT_SECONDS={seconds:g}; check that it is running or raise "
                       f"LLM_API_TIMEOUT_SECONDS") from None
        except openai.APIConnectionError as error:
            cause = type(error.__cause__ or error).__name__  # e.g. ConnectError, as the old client named it
            raise ModelUnavailableError(
                "llm", f"The LLM server at LLM_API_BASE={self.base} cannot be reached "
                       f"({cause}); start the OpenAI-compatible server or set LLM_API_BASE "
                       f"to its address (or LLM_BACKEND=transformers to use the local model)") from None
        except openai.APIStatusError as error:
            raise self._http_error(error.status_code, error.response.text) from None
        except openai.APIError as error:  # an {"error": ...} event in the middle of the stream
            raise self._http_error(500, json.dumps(error.body if error.body is not None else error.message,
                                                   ensure_ascii=False)) from None
        except json.JSONDecodeError as error:  # the SDK cannot skip a malformed event, so the reply ends here
            raise ModelUnavailableError(
                "llm", f"The LLM server at LLM_API_BASE={self.base} sent a malformed event ({error.msg}); "
                       f"check that LLM_API_BASE points at an OpenAI-compatible server") from None

    def _http_error(self, status: int, body: str) -> ModelUnavailableError:
        detail = " ".join(body.split())[:200]
        if status in (401, 403):
            fix = "set LLM_API_KEY to a key the server accepts"
        elif status == 404:
            fix = "check that LLM_API_BASE ends with the API prefix (usually /v1) and LLM_API_MODEL names a served model"
        else:
            fix = "check the server's log and that LLM_API_MODEL names a served model"
        return ModelUnavailableError(
            "llm", f"The LLM server at LLM_API_BASE={self.base} answered HTTP {status} ({detail}); {fix}")

    @staticmethod
    def _pieces(chunks: Iterable[Any]) -> Iterator[str]:
        """Content and reasoning deltas from the streamed chunks, reasoning wrapped in think tags."""
        in_reasoning = answered = False
        for chunk in chunks:
            if not chunk.choices:  # a usage-only chunk
                continue
            delta = chunk.choices[0].delta
            if delta is None:
                continue
            # Not in the OpenAI schema: vLLM/SGLang send reasoning_content, Ollama/llama.cpp reasoning.
            reasoning = getattr(delta, "reasoning_content", None) or getattr(delta, "reasoning", None)
            content = delta.content
            if reasoning and not answered:
                if not in_reasoning:
                    in_reasoning = True
                    yield THINK_OPEN
                yield reasoning
            if content:
                if in_reasoning:
                    in_reasoning = False
                    yield THINK_CLOSE
                answered = True
                yield content
        if in_reasoning:
            yield THINK_CLOSE
