"""Request bodies as the clients send them. Unknown fields are accepted and ignored (LiteLLM's
`drop_params`, `user` as an object, `tools`, vendor extensions): a client must not fail on AskAny
for sending what another server understands."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from askany.core.text import is_utf8


class Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _text_is_text(cls, values: Any) -> Any:
        """JSON can spell a lone surrogate ("\\ud800"), which no tokenizer or Postgres takes: a 400."""
        if not _all_utf8(values):
            raise ValueError("a string holds a lone surrogate escape, which is not valid Unicode text")
        return values


def _all_utf8(value: Any) -> bool:
    if isinstance(value, str):
        return is_utf8(value)
    if isinstance(value, dict):
        return all(_all_utf8(k) and _all_utf8(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_all_utf8(item) for item in value)
    return True


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
