"""Request bodies as the clients send them. Unknown fields are accepted and ignored (LiteLLM's
`drop_params`, `user` as an object, `tools`, vendor extensions): a client must not fail on AskAny
for sending what another server understands."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class EmbeddingsRequest(Lenient):
    input: str | list[Any]
    model: str | None = None
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = None


class RerankDocument(Lenient):
    text: str


class RerankRequest(Lenient):
    """Jina / Cohere shape (`documents`, `top_n`) or TEI's (`texts`, `raw_scores`)."""

    query: str
    model: str | None = None
    documents: list[str | RerankDocument] | None = None
    texts: list[str] | None = None
    top_n: int | None = Field(None, ge=0)
    return_documents: bool | None = None
    raw_scores: bool | None = None
    return_text: bool | None = None
    truncate: bool | None = None


class ChatMessage(Lenient):
    role: str
    content: str | list[Any] | None = None


class StreamOptions(Lenient):
    include_usage: bool | None = None


class ChatRequest(Lenient):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = None
    enable_thinking: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    n: int | None = Field(None, ge=1, le=1)

    def thinking(self) -> bool | None:
        """enable_thinking, chat_template_kwargs.enable_thinking, or DeepSeek/Anthropic-style
        thinking: {"type": "enabled" | "disabled"}, in that order; None: the settings' default."""
        if self.enable_thinking is not None:
            return self.enable_thinking
        value = (self.chat_template_kwargs or {}).get("enable_thinking")
        if value is not None:
            return bool(value)
        style = (self.model_extra or {}).get("thinking")
        if isinstance(style, dict) and style.get("type") in ("enabled", "disabled"):
            return style["type"] == "enabled"
        return None

    def stop_list(self) -> list[str] | None:
        if self.stop is None:
            return None
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]
