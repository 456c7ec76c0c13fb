"""The local backend: Qwen3 loaded in this process by transformers, streamed from a background thread.

Generation stops after the current token when the reader stops listening (a
stop button, a dropped connection, a stop string), so an abandoned answer does
not keep the CPU busy.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

from askany.core.config import Settings
from askany.core.errors import ModelUnavailableError
from askany.generation.backends import DEFAULT_API_CONTEXT_WINDOW, GenerationOptions
from askany.generation.prompt import Message
from askany.generation.thinking import THINK_CLOSE, THINK_OPEN, partial_suffix
from askany.models.registry import LoadedLLM


class _Cancelled:
    """A stopping criterion that ends `generate` when the reader stops listening."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool,
                          device=input_ids.device)


class TransformersGenerator:
    """Qwen3 loaded in this process, generating in a background thread and streaming text pieces."""

    def __init__(self, llm: LoadedLLM, settings: Settings):
        self.llm = llm
        self.settings = settings
        self._lock = threading.Lock()  # one generation at a time: concurrent ones would only thrash the CPU
        keep = {THINK_OPEN, THINK_CLOSE}
        self._drop = [t for t in getattr(llm.tokenizer, "all_special_tokens", []) if t and t not in keep]

    @property
    def context_window(self) -> int:
        if self.settings.llm_context_window:
            return self.settings.llm_context_window
        window = getattr(self.llm.model.config, "max_position_embeddings", None)
        return int(window) if window else DEFAULT_API_CONTEXT_WINDOW

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenizer(text, add_special_tokens=False)["input_ids"])

    def render_prompt(self, messages: list[Message], enable_thinking: bool) -> str:
        """The exact prompt text the model sees (Qwen3's template pre-fills an empty think block when off)."""
        return self.llm.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking)

    def generation_config(self, options: GenerationOptions | None = None) -> Any:
        """Sampling from `options`, else the settings; neutral values when greedy so transformers does not warn."""
        from transformers import GenerationConfig

        options = (options or GenerationOptions()).resolved(self.settings)

        base = self.llm.model.generation_config
        tokenizer = self.llm.tokenizer
        eos = base.eos_token_id if isinstance(base.eos_token_id, list) else [base.eos_token_id]
        for name in ("<|im_end|>", "<|endoftext|>"):
            token_id = tokenizer.convert_tokens_to_ids(name)
            if isinstance(token_id, int) and token_id != tokenizer.unk_token_id and token_id not in eos:
                eos.append(token_id)
        eos = [token for token in eos if token is not None]
        sample = options.temperature > 0
        return GenerationConfig(
            max_new_tokens=options.max_tokens,
            do_sample=sample,
            temperature=options.temperature if sample else 1.0,
            top_p=options.top_p if sample else 1.0,
            top_k=base.top_k if sample and base.top_k else 50,
            eos_token_id=eos,
            pad_token_id=base.pad_token_id if base.pad_token_id is not None else eos[0],
            bos_token_id=base.bos_token_id,
        )

    def stream(self, messages: list[Message], enable_thinking: bool,
               options: GenerationOptions | None = None) -> Iterator[str]:
        """Run `model.generate` in a thread and yield decoded pieces as `TextIteratorStreamer` releases them.

        Stopping the iteration early stops generation after the current token.
        End-of-turn tokens are removed from the text; ``<think>`` tags are kept
        for the splitter. When the template itself opens the think block, a
        ``<think>`` piece is yielded first so the splitter sees a complete block.
        Stop strings in `options` end the reply before the first one, as an
        OpenAI-compatible server would.
        """
        options = (options or GenerationOptions()).resolved(self.settings)
        prompt = self.render_prompt(messages, enable_thinking)
        with self._lock:
            if prompt.rstrip().endswith(THINK_OPEN):
                yield THINK_OPEN
            pieces = self._generate(prompt, self.generation_config(options))
            try:
                yield from cut_at_stop(pieces, options.stop or [])
            finally:
                pieces.close()  # a stop string ends generation now, not when the generator is collected

    def _generate(self, prompt: str, config: Any) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        tokenizer, model = self.llm.tokenizer, self.llm.model
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.llm.device)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=False)
        cancel = threading.Event()
        failures: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    model.generate(**inputs, streamer=streamer, generation_config=config,
                                   stopping_criteria=StoppingCriteriaList([_Cancelled(cancel)]))
            except BaseException as error:  # handed to the reading thread, which re-raises it
                failures.append(error)
                streamer.end()

        worker = threading.Thread(target=run, name="askany-generate", daemon=True)
        worker.start()
        try:
            for piece in streamer:
                for token in self._drop:
                    piece = piece.replace(token, "")
                if piece:
                    yield piece
        finally:
            cancel.set()
            worker.join()
        if failures:
            self._raise(failures[0])

    def _raise(self, error: BaseException) -> None:
        """Running out of memory is something the user can fix; anything else is a bug and raises as is."""
        import torch

        if isinstance(error, MemoryError | torch.OutOfMemoryError):
            raise ModelUnavailableError(
                "llm", "The LLM ran out of memory while answering; lower LLM_CONTEXT_WINDOW or "
                       "LLM_MAX_NEW_TOKENS, or set LLM_MODEL to a smaller model") from None
        raise error


def cut_at_stop(pieces: Iterable[str], stops: list[str]) -> Iterator[str]:
    """The pieces up to (not including) the first stop string; a stop split across pieces is still found.

    Text that could be the start of a stop string is held back until the next
    piece shows whether it is one, so nothing after a stop is ever yielded.
    """
    if not stops:
        yield from pieces
        return
    held = ""
    for piece in pieces:
        held += piece
        found = [index for index in (held.find(stop) for stop in stops) if index >= 0]
        if found:
            if held[:min(found)]:
                yield held[:min(found)]
            return
        keep = max(partial_suffix(held, stop) for stop in stops)
        if len(held) > keep:
            yield held[:len(held) - keep]
            held = held[len(held) - keep:]
    if held:
        yield held
