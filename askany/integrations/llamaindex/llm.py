"""AskAny's LLM backend (local Qwen3 through transformers, or the OpenAI-compatible server it is set up
for) as a LlamaIndex LLM, so query engines and agents use the model AskAny already loaded."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM

from askany.core.errors import ModelUnavailableError
from askany.generation import ThinkingSplitter
from askany.service import Service


class AskAnyLLM(CustomLLM):
    """Chat and completion through AskAny's generator; Qwen3's thinking is left out of the text
    unless `enable_thinking` (then it arrives in `additional_kwargs["thinking"]`)."""

    enable_thinking: bool = False
    _service: Service = PrivateAttr()

    def __init__(self, service: Service, enable_thinking: bool = False, **kwargs: Any):
        super().__init__(enable_thinking=enable_thinking, **kwargs)
        self._service = service

    @classmethod
    def class_name(cls) -> str:
        return "AskAnyLLM"

    def _generator(self) -> Any:
        generator = self._service.generator()
        if generator is None:
            raise ModelUnavailableError("llm", "No LLM is configured (LLM_BACKEND=none): set LLM_BACKEND=transformers "
                                        "or openai to use AskAnyLLM")
        return generator

    @property
    def metadata(self) -> LLMMetadata:
        settings = self._service.settings
        try:
            window = self._generator().context_window
        except ModelUnavailableError:
            window = settings.llm_context_window or 4096
        return LLMMetadata(context_window=window, num_output=settings.llm_max_new_tokens, is_chat_model=True,
                           model_name=settings.llm_api_model if settings.llm_backend == "openai" else settings.llm_model)

    def _pieces(self, messages: Sequence[ChatMessage]) -> Iterator[tuple[str, str]]:
        """("thinking" | "answer", text) as the model writes."""
        plain = [{"role": _role(m.role), "content": m.content or ""} for m in messages]
        splitter = ThinkingSplitter()
        for piece in self._generator().stream(plain, self.enable_thinking):
            yield from splitter.feed(piece)
        yield from splitter.finish()

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        def gen() -> ChatResponseGen:
            text, thinking = "", ""
            for kind, piece in self._pieces(messages):
                if kind == "thinking":
                    thinking += piece
                    continue
                text += piece
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=piece,
                                   additional_kwargs={"thinking": thinking})
        return gen()

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        last = deque(self.stream_chat(messages, **kwargs), maxlen=1)
        return last[0] if last else ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=""))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            for response in self.stream_chat([ChatMessage(role=MessageRole.USER, content=prompt)]):
                yield CompletionResponse(text=response.message.content or "", delta=response.delta,
                                         additional_kwargs=response.additional_kwargs)
        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        last = deque(self.stream_complete(prompt, formatted=formatted, **kwargs), maxlen=1)
        return last[0] if last else CompletionResponse(text="")


def _role(role: MessageRole | str) -> str:
    value = role.value if isinstance(role, MessageRole) else str(role)
    return value if value in ("system", "user", "assistant") else "user"
