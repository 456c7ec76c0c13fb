"""LLM backends behind one small interface: stream a chat reply, count tokens, know the context window.

`make_generator` picks the backend LLM_BACKEND names. The backend modules are
imported only when chosen, so the local path never imports the `openai` SDK and
the remote path never imports torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from askany.core.config import Settings
from askany.generation.prompt import Message

if TYPE_CHECKING:
    from askany.models.registry import ModelRegistry

#: Context window assumed when neither LLM_CONTEXT_WINDOW nor the model's config gives one.
DEFAULT_API_CONTEXT_WINDOW = 32768


@dataclass
class GenerationOptions:
    """Per-request sampling settings; None means the settings' default (LLM_MAX_NEW_TOKENS, ...).

    The OpenAI-compatible server fills these from a request's max_tokens,
    temperature, top_p and stop; the CLI and the page leave them all None.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None

    def __post_init__(self) -> None:
        # The same bounds the settings enforce, so a request cannot ask for what a .env could not.
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, not {self.max_tokens}")
        if self.temperature is not None and self.temperature < 0:
            raise ValueError(f"temperature must be 0 or more, not {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], not {self.top_p}")
        if self.stop is not None and not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError("stop strings must be non-empty strings")

    def resolved(self, settings: Settings) -> GenerationOptions:
        """Every None filled from the settings (stop becomes an empty list), so backends read plain values."""
        return replace(
            self,
            max_tokens=self.max_tokens if self.max_tokens is not None else settings.llm_max_new_tokens,
            temperature=self.temperature if self.temperature is not None else settings.llm_temperature,
            top_p=self.top_p if self.top_p is not None else settings.llm_top_p,
            stop=list(self.stop or []),
        )


class Generator(Protocol):
    """Anything that can stream a chat completion and count tokens for its model."""

    def stream(self, messages: list[Message], enable_thinking: bool,
               options: GenerationOptions | None = None) -> Iterator[str]:
        """Yield text pieces of the reply; a thinking reply starts with ``<think>``."""
        ...

    def count_tokens(self, text: str) -> int: ...

    @property
    def context_window(self) -> int: ...


def make_generator(settings: Settings, registry: ModelRegistry) -> Generator | None:
    """The generator LLM_BACKEND names (None for "none"); raises ModelUnavailableError when it cannot load."""
    if settings.llm_backend == "none":
        return None
    if settings.llm_backend == "openai":
        from askany.generation.backends.openai import OpenAIGenerator

        return OpenAIGenerator(settings)
    from askany.generation.backends.transformers import TransformersGenerator

    return TransformersGenerator(registry.llm(), settings)


__all__ = ["DEFAULT_API_CONTEXT_WINDOW", "GenerationOptions", "Generator", "make_generator"]
