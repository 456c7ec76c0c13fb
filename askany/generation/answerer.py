"""The answerer: question plus numbered passages in, an `Answer` out, streamed as the model writes.

It chooses the backend (LLM_BACKEND), fits the prompt into the context window,
separates thinking from the answer and collects the citations. Model problems
never reach the caller as errors: they become an extractive answer whose
`notice` says what to fix.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from askany.core.config import Settings
from askany.core.errors import ModelUnavailableError
from askany.core.notices import Notice
from askany.generation.answer import Answer, citation_numbers
from askany.generation.backends import GenerationOptions, Generator, make_generator
from askany.generation.extractive import extractive_answer, no_passages_answer
from askany.generation.fitting import fit_passages
from askany.generation.prompt import Message, Passage, build_messages, template_margin
from askany.generation.thinking import ThinkingSplitter
from askany.models.registry import ModelRegistry

log = logging.getLogger(__name__)

StreamEvent = tuple[str, "str | Answer"]


class Answerer:
    """Answers a question from numbered passages with the configured LLM backend, or extractively.

    Model problems never reach the caller as errors: they become an extractive
    answer whose `notice` says what to fix.
    """

    def __init__(self, settings: Settings, registry: ModelRegistry, generator: Generator | None = None):
        """`generator` replaces the one LLM_BACKEND would choose (tests, or a caller that already has one)."""
        self.settings = settings
        self.registry = registry
        self._generator: Generator | None = generator
        self._lock = threading.Lock()

    def generator(self) -> Generator | None:
        """The backend's generator (None for LLM_BACKEND=none); raises ModelUnavailableError."""
        backend = self.settings.llm_backend
        if backend == "none" and self._generator is None:
            return None
        with self._lock:
            if self._generator is None:
                self._generator = make_generator(self.settings, self.registry)
            return self._generator

    def answer(self, question: str, passages: Sequence[Passage], enable_thinking: bool | None = None,
               history: Sequence[Message] | None = None,
               on_token: Callable[[str, str], None] | None = None,
               options: GenerationOptions | None = None) -> Answer:
        """Answer in one call; `on_token(kind, piece)` sees "thinking"/"answer" pieces as they stream."""
        for kind, value in self.answer_stream(question, passages, enable_thinking, history, options):
            if isinstance(value, Answer):
                return value
            if on_token is not None:
                on_token(kind, value)
        raise AssertionError("answer_stream ended without a final answer")  # pragma: no cover

    def answer_stream(self, question: str, passages: Sequence[Passage], enable_thinking: bool | None = None,
                      history: Sequence[Message] | None = None,
                      options: GenerationOptions | None = None,
                      stop: threading.Event | None = None) -> Iterator[StreamEvent]:
        """Yield ("thinking"|"answer", piece) as the model writes, then ("done", Answer).

        `options` (max_tokens, temperature, top_p, stop) override the settings for this answer.
        When `stop` is set (a stop button), generation ends after the piece being written and the
        answer is what was written so far, with a "stopped" notice.
        """
        passages = list(passages)
        if not passages:
            yield "done", no_passages_answer()
            return
        thinking = self.settings.llm_enable_thinking if enable_thinking is None else enable_thinking
        started = time.perf_counter()
        try:
            generator = self.generator()
        except ModelUnavailableError as error:
            yield "done", self._fallback(question, passages, Notice("llm_unavailable", reason=error))
            return
        if generator is None:
            yield "done", self._fallback(question, passages, Notice("llm_off"))
            return
        load_seconds = time.perf_counter() - started
        max_tokens = self._max_tokens(options)
        budget = generator.context_window - max_tokens - template_margin(2 + len(history or []))
        fitted = fit_passages(generator.count_tokens, question, passages, budget, history=history) \
            if budget > 0 else []
        if not fitted:
            yield "done", self._fallback(question, passages,
                                         self._too_small_notice(generator, budget, max_tokens))
            return
        messages = build_messages(question, fitted, history)
        yield from self._generate(generator, messages, thinking, fitted, question, load_seconds, options, stop)

    def _generate(self, generator: Generator, messages: list[Message], thinking: bool,
                  passages: list[Passage], question: str, load_seconds: float,
                  options: GenerationOptions | None = None,
                  stop: threading.Event | None = None) -> Iterator[StreamEvent]:
        """Stream from the generator through the thinking splitter, timing the first piece and the whole."""
        splitter = ThinkingSplitter()
        parts: dict[str, list[str]] = {"thinking": [], "answer": []}
        notice = ""
        started = time.perf_counter()
        first_token: float | None = None  # time to the first visible text, what the user waits for
        received = False
        # Without options, call with two arguments: generators written before options existed still work.
        pieces = (generator.stream(messages, thinking) if options is None
                  else generator.stream(messages, thinking, options))
        try:
            for piece in pieces:
                if stop is not None and stop.is_set():
                    notice = Notice("stopped")
                    close = getattr(pieces, "close", None)
                    if close is not None:
                        close()  # the transformers backend stops after the current token
                    break
                received = True
                for kind, text in splitter.feed(piece):
                    if first_token is None:
                        first_token = time.perf_counter() - started
                    parts[kind].append(text)
                    yield kind, text
        except ModelUnavailableError as error:
            if not received:  # nothing shown yet: answer extractively instead
                yield "done", self._fallback(question, passages, Notice("llm_unavailable", reason=error))
                return
            notice = Notice("answer_cut", reason=error)
            log.warning("%s", notice)
        for kind, text in splitter.finish():
            parts[kind].append(text)
            yield kind, text
        total = time.perf_counter() - started
        timings = {"generate": total, "first_token": total if first_token is None else first_token}
        if load_seconds >= 0.01:
            timings["load"] = load_seconds
        text = "".join(parts["answer"])
        if not text and not notice:
            notice = Notice("no_answer_within_tokens", max_new_tokens=self._max_tokens(options),
                            hint="; raise it or turn thinking off" if parts["thinking"] else "")
        yield "done", Answer(text=text, thinking="".join(parts["thinking"]), kind="generated",
                             citations=citation_numbers(text, [p.number for p in passages]),
                             timings=timings, notice=notice)

    def _max_tokens(self, options: GenerationOptions | None) -> int:
        """The answer's token limit: the request's max_tokens, else LLM_MAX_NEW_TOKENS."""
        if options is not None and options.max_tokens is not None:
            return options.max_tokens
        return self.settings.llm_max_new_tokens

    @staticmethod
    def _too_small_notice(generator: Generator, budget: int, max_tokens: int) -> Notice:
        if budget <= 0:
            return Notice("context_no_room", window=generator.context_window, max_new_tokens=max_tokens)
        return Notice("question_too_long", window=generator.context_window)

    @staticmethod
    def _fallback(question: str, passages: Sequence[Passage], notice: Notice) -> Answer:
        log.info("Answering extractively: %s", notice)
        answer = extractive_answer(question, passages)
        answer.notice = notice
        return answer
