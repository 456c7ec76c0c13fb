"""Answering: turn a question plus numbered passages into an answer with [n] citations.

Retrieval hands over the top-ranked passages, already numbered 1..k. This
module writes the prompt (`build_messages`), cuts it to the model's context
window (`fit_passages`), streams the answer from a generator (local
transformers Qwen3 or an OpenAI-compatible server), separates Qwen3's
``<think>`` block from the answer (`ThinkingSplitter`) and collects the
citations. When no LLM can be used, `extractive_answer` picks the best-matching
sentences from the passages instead, so a question always gets an answer and
never a traceback.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from askany.config import Settings
from askany.errors import ModelUnavailableError
from askany.models import LoadedLLM, ModelRegistry

log = logging.getLogger(__name__)

NO_ANSWER = "根据提供的资料无法回答该问题。"
NOTHING_FOUND = "知识库中没有找到与该问题相关的资料，无法回答。"
LOW_CONFIDENCE_LABEL = "（FAQ，匹配度较低）"
TRUNCATION_MARK = "……"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
DEFAULT_API_CONTEXT_WINDOW = 32768

AnswerKind = Literal["generated", "extracted", "faq", "none"]
Message = dict[str, str]

SYSTEM_PROMPT = """你是一个严谨的问答助手，只能根据用户消息中提供的编号资料回答问题。
请遵守以下规则：
1. 只使用资料中的信息回答，不要使用资料以外的知识，也不要编造内容。
2. 在每条陈述之后紧跟它所依据的资料编号，格式为 [n]，例如：“员工每年有十五天年假[1]。”；依据多条资料时写成 [1][2]。
3. 如果资料中没有问题的答案，请直接说明：“{no_answer}”不要猜测。
4. 标有“{low}”的资料只是相似的常见问题，仅当它确实回答了用户的问题时才可使用。
5. 用提问所用的语言回答：中文问题用中文回答，英文问题用英文回答。
6. 回答简洁、直接，不要复述这些规则。""".format(no_answer=NO_ANSWER, low=LOW_CONFIDENCE_LABEL.strip("（）"))


# --------------------------------------------------------------------------- data


@dataclass
class Passage:
    """One retrieved passage as the model sees it; `number` is the citation number [n]."""

    number: int
    text: str
    source: str
    title: str
    heading_path: list[str] = field(default_factory=list)
    low_confidence: bool = False


@dataclass
class Answer:
    """The outcome of one question: answer text, hidden thinking, how it was made and its citations.

    `timings` holds seconds: "generate" and "first_token" for LLM answers (plus
    "load" when the model was loaded by this call), "extract" for extractive ones.
    """

    text: str
    thinking: str = ""
    kind: AnswerKind = "generated"
    citations: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notice: str = ""


# --------------------------------------------------------------------------- prompt


def passage_label(passage: Passage) -> str:
    """Title plus heading path, so the model (and a reader of the prompt) knows where a passage sits."""
    title = passage.title.strip() or (Path(passage.source).name if passage.source else "")
    parts = [title] if title else []
    parts += [h.strip() for h in passage.heading_path if h.strip() and h.strip() != title]
    return " > ".join(parts)


def format_passage(passage: Passage) -> str:
    """``[n] label`` on the first line, the passage text below it."""
    header = f"[{passage.number}]"
    if passage.low_confidence:
        header += f" {LOW_CONFIDENCE_LABEL}"
    label = passage_label(passage)
    if label:
        header += f" {label}"
    return f"{header}\n{passage.text.strip()}"


def build_messages(question: str, passages: Sequence[Passage], history: Sequence[Message] | None = None
                   ) -> list[Message]:
    """System rules, optional earlier turns, then one user message with the numbered passages and the question.

    The passages go into the final user message (not the system prompt) so that
    earlier turns of a chat keep their own context and only the latest
    retrieval is shown to the model.
    """
    if passages:
        material = "\n\n".join(format_passage(p) for p in passages)
    else:
        material = "（没有资料）"
    user = f"资料：\n{material}\n\n问题：{question.strip()}"
    messages: list[Message] = [{"role": "system", "content": SYSTEM_PROMPT}]
    messages += [{"role": str(turn["role"]), "content": str(turn["content"])} for turn in history or []]
    messages.append({"role": "user", "content": user})
    return messages


def prompt_text(messages: Sequence[Message]) -> str:
    """The message contents joined: what `fit_passages` counts (chat markup is covered by a margin)."""
    return "\n".join(m["content"] for m in messages)


def template_margin(message_count: int) -> int:
    """Tokens the chat template adds around the contents (role markers, generation prompt, think block)."""
    return 16 + 8 * message_count


# --------------------------------------------------------------------------- citations

_CITATION = re.compile(r"[\[【]\s*(\d+(?:\s*[,，、;；]\s*\d+)*)\s*[\]】]")


def citation_numbers(text: str, passage_numbers: Iterable[int]) -> list[int]:
    """Numbers cited as [1], [1][2], [1, 2], [1,2] or 【1】 that name real passages, first appearance first."""
    known = set(passage_numbers)
    found: list[int] = []
    for match in _CITATION.finditer(text):
        for number in (int(n) for n in re.findall(r"\d+", match.group(1))):
            if number in known and number not in found:
                found.append(number)
    return found


# --------------------------------------------------------------------------- thinking


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that could be the start of `tag` (a tag split across pieces)."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ThinkingSplitter:
    """Separates a streamed ``<think>…</think>`` block from the answer that follows it.

    Feed it text pieces as they arrive; each `feed` returns ``("thinking", piece)``
    and ``("answer", piece)`` events. Text before ``</think>`` is thinking when the
    output starts with ``<think>``; otherwise everything is answer. Tags split
    across pieces are held back until they can be recognised, and whitespace at
    the edges of each part is dropped, so the concatenated events equal the
    stripped parts `split_thinking` returns.
    """

    def __init__(self) -> None:
        self._state: Literal["start", "thinking", "answer"] = "start"
        self._buffer = ""
        self._pending_space = ""
        self._section_start = True

    def feed(self, piece: str) -> list[tuple[str, str]]:
        """Consume one piece of model output; return the events it completes."""
        self._buffer += piece
        events: list[tuple[str, str]] = []
        while True:
            if self._state == "start":
                head = self._buffer.lstrip()
                if head.startswith(THINK_OPEN):
                    self._buffer = head[len(THINK_OPEN):]
                    self._enter("thinking")
                    continue
                if THINK_OPEN.startswith(head):  # empty or a partial "<think"
                    return events
                self._enter("answer")
                continue
            if self._state == "thinking":
                end = self._buffer.find(THINK_CLOSE)
                if end >= 0:
                    self._emit(events, "thinking", self._buffer[:end], final=True)
                    self._buffer = self._buffer[end + len(THINK_CLOSE):]
                    self._enter("answer")
                    continue
                keep = _partial_suffix(self._buffer, THINK_CLOSE)
                self._emit(events, "thinking", self._buffer[:len(self._buffer) - keep])
                self._buffer = self._buffer[len(self._buffer) - keep:]
                return events
            self._emit(events, "answer", self._buffer)
            self._buffer = ""
            return events

    def finish(self) -> list[tuple[str, str]]:
        """Flush what is held back; an unclosed think block (output cut off) stays thinking."""
        events: list[tuple[str, str]] = []
        kind = "thinking" if self._state == "thinking" else "answer"
        if self._state == "start":
            self._enter("answer")
        self._emit(events, kind, self._buffer, final=True)
        self._buffer = ""
        return events

    def _enter(self, state: Literal["thinking", "answer"]) -> None:
        self._state = state
        self._pending_space = ""
        self._section_start = True

    def _emit(self, events: list[tuple[str, str]], kind: str, text: str, final: bool = False) -> None:
        """Append `text` as an event, trimming whitespace at the section's edges without looking ahead."""
        if self._section_start:
            text = text.lstrip()
            if not text:
                return
            self._section_start = False
        text = self._pending_space + text
        self._pending_space = ""
        if not final:
            body = text.rstrip()
            self._pending_space = text[len(body):]
            text = body
        else:
            text = text.rstrip()
        if text:
            events.append((kind, text))


def split_thinking(text: str) -> tuple[str, str]:
    """Return ``(thinking, answer)`` from a complete model output (see `ThinkingSplitter`)."""
    splitter = ThinkingSplitter()
    parts: dict[str, list[str]] = {"thinking": [], "answer": []}
    for kind, piece in [*splitter.feed(text), *splitter.finish()]:
        parts[kind].append(piece)
    return "".join(parts["thinking"]), "".join(parts["answer"])


# --------------------------------------------------------------------------- context fitting


def _truncated(passage: Passage, length: int) -> Passage:
    return replace(passage, text=passage.text[:length].rstrip() + TRUNCATION_MARK)


def fit_passages(tokenizer_count: Callable[[str], int], question: str, passages: Sequence[Passage],
                 budget_tokens: int, *, history: Sequence[Message] | None = None) -> list[Passage]:
    """The leading passages whose prompt fits in `budget_tokens`, counted with the model's tokenizer.

    Passages are ranked best first, so the last ones are dropped first. When not
    even the first passage fits, its text is cut (binary search on its length).
    The whole prompt is recounted each time rather than summing per-passage
    counts, because tokens can merge across joins; the result never exceeds the
    budget. Returns an empty list when the question alone does not fit.
    """
    def size(candidate: Sequence[Passage]) -> int:
        return tokenizer_count(prompt_text(build_messages(question, candidate, history)))

    if size([]) > budget_tokens:
        log.warning("The question alone needs more than %d tokens; no passage fits", budget_tokens)
        return []
    kept: list[Passage] = []
    for passage in passages:
        if size([*kept, passage]) <= budget_tokens:
            kept.append(passage)
            continue
        if not kept:
            cut = _truncate_to_fit(size, passage, budget_tokens)
            if cut is not None:
                kept.append(cut)
        break
    if len(kept) < len(passages) or (kept and kept[0] is not passages[0]):
        log.info("Context window: kept %d of %d passages (the first may be cut) within %d tokens",
                 len(kept), len(passages), budget_tokens)
    return kept


def _truncate_to_fit(size: Callable[[Sequence[Passage]], int], passage: Passage, budget: int) -> Passage | None:
    """The longest prefix of `passage` that fits, or None when not even a few characters do."""
    low, high = 0, len(passage.text)  # invariant: a prefix of `low` characters fits
    while low < high:
        middle = (low + high + 1) // 2
        if size([_truncated(passage, middle)]) <= budget:
            low = middle
        else:
            high = middle - 1
    if low == 0:
        return None
    return _truncated(passage, low)


# --------------------------------------------------------------------------- generators


class Generator(Protocol):
    """Anything that can stream a chat completion and count tokens for its model."""

    def stream(self, messages: list[Message], enable_thinking: bool) -> Iterator[str]:
        """Yield text pieces of the reply; a thinking reply starts with ``<think>``."""
        ...

    def count_tokens(self, text: str) -> int: ...

    @property
    def context_window(self) -> int: ...


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

    def generation_config(self) -> Any:
        """Sampling from the settings; neutral values when greedy so transformers does not warn."""
        from transformers import GenerationConfig

        base = self.llm.model.generation_config
        tokenizer = self.llm.tokenizer
        eos = base.eos_token_id if isinstance(base.eos_token_id, list) else [base.eos_token_id]
        for name in ("<|im_end|>", "<|endoftext|>"):
            token_id = tokenizer.convert_tokens_to_ids(name)
            if isinstance(token_id, int) and token_id != tokenizer.unk_token_id and token_id not in eos:
                eos.append(token_id)
        eos = [token for token in eos if token is not None]
        sample = self.settings.llm_temperature > 0
        return GenerationConfig(
            max_new_tokens=self.settings.llm_max_new_tokens,
            do_sample=sample,
            temperature=self.settings.llm_temperature if sample else 1.0,
            top_p=self.settings.llm_top_p if sample else 1.0,
            top_k=base.top_k if sample and base.top_k else 50,
            eos_token_id=eos,
            pad_token_id=base.pad_token_id if base.pad_token_id is not None else eos[0],
            bos_token_id=base.bos_token_id,
        )

    def stream(self, messages: list[Message], enable_thinking: bool) -> Iterator[str]:
        """Run `model.generate` in a thread and yield decoded pieces as `TextIteratorStreamer` releases them.

        Stopping the iteration early stops generation after the current token.
        End-of-turn tokens are removed from the text; ``<think>`` tags are kept
        for the splitter. When the template itself opens the think block, a
        ``<think>`` piece is yielded first so the splitter sees a complete block.
        """
        prompt = self.render_prompt(messages, enable_thinking)
        with self._lock:
            if prompt.rstrip().endswith(THINK_OPEN):
                yield THINK_OPEN
            yield from self._generate(prompt)

    def _generate(self, prompt: str) -> Iterator[str]:
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
                    model.generate(**inputs, streamer=streamer, generation_config=self.generation_config(),
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


_CJK_OR_WIDE = re.compile(r"[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")


def estimate_tokens(text: str) -> int:
    """Rough Qwen token count without its tokenizer: one per CJK character, one per four other characters.

    Qwen's real tokenizer packs common Chinese into slightly fewer tokens, so
    this errs on the safe (larger) side for Chinese prompts.
    """
    wide = len(_CJK_OR_WIDE.findall(text))
    return wide + math.ceil((len(text) - wide) / 4)


class OpenAIGenerator:
    """A chat-completions client for an OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama).

    Thinking is switched with vLLM's ``chat_template_kwargs``. Servers that return
    the reasoning separately (``delta.reasoning_content``) have it wrapped in
    ``<think>…</think>`` here, so the same splitter handles both styles.
    """

    def __init__(self, settings: Settings, transport: Any = None):
        self.settings = settings
        self.base = settings.llm_api_base.rstrip("/")
        self.url = f"{self.base}/chat/completions"
        self.model = settings.llm_api_model or settings.llm_model
        self._transport = transport  # an httpx transport, for tests

    @property
    def context_window(self) -> int:
        return self.settings.llm_context_window or DEFAULT_API_CONTEXT_WINDOW

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def request_body(self, messages: list[Message], enable_thinking: bool) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "max_tokens": self.settings.llm_max_new_tokens,
            "temperature": self.settings.llm_temperature,
            "top_p": self.settings.llm_top_p,
            "chat_template_kwargs": {"enable_thinking": enable_thinking},
        }

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self.settings.llm_api_key:
            headers["Authorization"] = f"Bearer {self.settings.llm_api_key}"
        return headers

    def stream(self, messages: list[Message], enable_thinking: bool) -> Iterator[str]:
        """POST the request with ``stream: true`` and yield text pieces from the server-sent events."""
        import httpx

        seconds = self.settings.llm_api_timeout_seconds
        timeout = httpx.Timeout(seconds, connect=min(seconds, 10.0))
        body = self.request_body(messages, enable_thinking)
        try:
            with httpx.Client(timeout=timeout, transport=self._transport) as client, \
                    client.stream("POST", self.url, json=body, headers=self.headers()) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._http_error(response.status_code, response.text)
                yield from self._pieces(response.iter_lines())
        except httpx.TimeoutException:
            raise ModelUnavailableError(
                "llm", f"The LLM server at LLM_API_BASE={self.base} did not answer within "
                       f"LLM_API_TIMEOUT_SECONDS={seconds:g}; check that it is running or raise "
                       f"LLM_API_TIMEOUT_SECONDS") from None
        except httpx.HTTPError as error:
            raise ModelUnavailableError(
                "llm", f"The LLM server at LLM_API_BASE={self.base} cannot be reached "
                       f"({type(error).__name__}); start the OpenAI-compatible server or set LLM_API_BASE "
                       f"to its address (or LLM_BACKEND=transformers to use the local model)") from None

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

    def _pieces(self, lines: Iterable[str]) -> Iterator[str]:
        """Content and reasoning deltas from SSE ``data:`` lines, reasoning wrapped in think tags."""
        in_reasoning = answered = False
        for line in lines:
            if not line.startswith("data:"):
                continue
            data = line[len("data:"):].strip()
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except json.JSONDecodeError:
                log.debug("Ignoring a malformed event from the LLM server: %.200s", data)
                continue
            if isinstance(chunk, dict) and chunk.get("error"):
                raise self._http_error(500, json.dumps(chunk["error"], ensure_ascii=False))
            choices = (chunk.get("choices") if isinstance(chunk, dict) else None) or [{}]
            delta = choices[0].get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            content = delta.get("content")
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


# --------------------------------------------------------------------------- extractive fallback

_SENTENCE = re.compile(r"[^。！？；!?;…\n]+?(?:[。！？；!?;…]+[”’」』）)\]]*|\.(?=\s)|\n|$)")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)*")
_TRAILING_PUNCT = re.compile(r"[。！？；!?;….]+[”’」』）)\]]*$")
#: Question words say what is asked, not what about: matching them finds nothing useful.
_QUESTION_WORDS = {
    "什么", "怎么", "怎样", "如何", "多少", "哪些", "哪个", "哪里", "为什么", "为何", "是否", "是不",
    "不是", "请问", "吗", "呢", "的", "了", "么", "是", "有", "有没", "没有", "可以",
    "what", "how", "which", "who", "why", "when", "where", "is", "are", "the", "a", "an", "of",
    "do", "does", "to", "in", "on", "for", "and", "or", "can", "i", "you",
}
_MAX_SENTENCE_CHARS = 200


def _features(text: str) -> set[str]:
    """Character bigrams of Chinese runs (single characters for one-character runs) and ASCII words."""
    text = text.lower()
    features: set[str] = set()
    for run in _CJK_RUN.findall(text):
        if len(run) == 1:
            features.add(run)
        features.update(run[i:i + 2] for i in range(len(run) - 1))
    features.update(_WORD.findall(text))
    return features - _QUESTION_WORDS


def split_sentences(text: str) -> list[str]:
    """Sentences ending in Chinese or ASCII terminal punctuation (or a line break), stripped, non-empty."""
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def _cited(sentence: str, number: int) -> str:
    """The sentence with its citation placed before the closing punctuation, like an LLM would write it."""
    if len(sentence) > _MAX_SENTENCE_CHARS:
        sentence = sentence[:_MAX_SENTENCE_CHARS].rstrip() + TRUNCATION_MARK
    match = _TRAILING_PUNCT.search(sentence)
    if match and match.start() > 0:
        return f"{sentence[:match.start()]}[{number}]{sentence[match.start():]}"
    return f"{sentence}[{number}]"


def _join(pieces: list[str]) -> str:
    """Chinese sentences run together; a space separates pieces that end and start with ASCII."""
    text = ""
    for piece in pieces:
        if text and (text[-1].isascii() or piece[0].isascii()):
            text += " "
        text += piece
    return text


def no_passages_answer(seconds: float = 0.0) -> Answer:
    return Answer(text=NOTHING_FOUND, kind="none", timings={"extract": seconds})


def extractive_answer(question: str, passages: Sequence[Passage], max_sentences: int = 3) -> Answer:
    """Answer without an LLM: the passages' sentences sharing most words with the question, each cited.

    Used when no model is configured or it cannot run, so the user still sees the
    relevant evidence. Never raises: a failure here would leave the user with nothing.
    """
    started = time.perf_counter()
    if not passages:
        return no_passages_answer()
    try:
        text = _extract(question, passages, max_sentences)
    except Exception:  # the fallback of last resort must not fail; show the best passage's start instead
        log.exception("Extractive answering failed; showing the first passage")
        first = passages[0]
        text = _cited(first.text.strip()[:_MAX_SENTENCE_CHARS], first.number)
    numbers = [p.number for p in passages]
    return Answer(text=text, kind="extracted", citations=citation_numbers(text, numbers),
                  timings={"extract": time.perf_counter() - started})


def _extract(question: str, passages: Sequence[Passage], max_sentences: int) -> str:
    wanted = _features(question)
    scored: list[tuple[int, int, int, str, int]] = []  # (overlap, passage rank, position, sentence, number)
    for rank, passage in enumerate(passages):
        for position, sentence in enumerate(split_sentences(passage.text)):
            overlap = len(wanted & _features(sentence))
            scored.append((overlap, rank, position, sentence, passage.number))
    if not scored:
        return NO_ANSWER
    best = max(item[0] for item in scored)
    if best == 0:
        first = min(scored, key=lambda item: (item[1], item[2]))
        return "资料中没有与问题直接对应的句子，最相关的资料是：" + _cited(first[3], first[4])
    good = [item for item in scored if item[0] >= max(1, math.ceil(best * 0.4))]
    chosen = sorted(good, key=lambda item: (-item[0], item[1], item[2]))[:max(1, max_sentences)]
    chosen.sort(key=lambda item: (item[1], item[2]))  # read in document order
    return _join([_cited(item[3], item[4]) for item in chosen])


# --------------------------------------------------------------------------- answerer

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
                if backend == "openai":
                    self._generator = OpenAIGenerator(self.settings)
                else:
                    self._generator = TransformersGenerator(self.registry.llm(), self.settings)
            return self._generator

    def answer(self, question: str, passages: Sequence[Passage], enable_thinking: bool | None = None,
               history: Sequence[Message] | None = None,
               on_token: Callable[[str, str], None] | None = None) -> Answer:
        """Answer in one call; `on_token(kind, piece)` sees "thinking"/"answer" pieces as they stream."""
        for kind, value in self.answer_stream(question, passages, enable_thinking, history):
            if isinstance(value, Answer):
                return value
            if on_token is not None:
                on_token(kind, value)
        raise AssertionError("answer_stream ended without a final answer")  # pragma: no cover

    def answer_stream(self, question: str, passages: Sequence[Passage], enable_thinking: bool | None = None,
                      history: Sequence[Message] | None = None) -> Iterator[StreamEvent]:
        """Yield ("thinking"|"answer", piece) as the model writes, then ("done", Answer)."""
        passages = list(passages)
        if not passages:
            yield "done", no_passages_answer()
            return
        thinking = self.settings.llm_enable_thinking if enable_thinking is None else enable_thinking
        started = time.perf_counter()
        try:
            generator = self.generator()
        except ModelUnavailableError as error:
            yield "done", self._fallback(question, passages, str(error))
            return
        if generator is None:
            yield "done", self._fallback(question, passages, "LLM_BACKEND=none: the answer is extracted "
                                                             "from the passages, no LLM was used")
            return
        load_seconds = time.perf_counter() - started
        budget = (generator.context_window - self.settings.llm_max_new_tokens
                  - template_margin(2 + len(history or [])))
        fitted = fit_passages(generator.count_tokens, question, passages, budget, history=history) \
            if budget > 0 else []
        if not fitted:
            yield "done", self._fallback(question, passages, self._too_small_notice(generator, budget))
            return
        messages = build_messages(question, fitted, history)
        yield from self._generate(generator, messages, thinking, fitted, question, load_seconds)

    def _generate(self, generator: Generator, messages: list[Message], thinking: bool,
                  passages: list[Passage], question: str, load_seconds: float) -> Iterator[StreamEvent]:
        """Stream from the generator through the thinking splitter, timing the first piece and the whole."""
        splitter = ThinkingSplitter()
        parts: dict[str, list[str]] = {"thinking": [], "answer": []}
        notice = ""
        started = time.perf_counter()
        first_token: float | None = None  # time to the first visible text, what the user waits for
        received = False
        try:
            for piece in generator.stream(messages, thinking):
                received = True
                for kind, text in splitter.feed(piece):
                    if first_token is None:
                        first_token = time.perf_counter() - started
                    parts[kind].append(text)
                    yield kind, text
        except ModelUnavailableError as error:
            if not received:  # nothing shown yet: answer extractively instead
                yield "done", self._fallback(question, passages, str(error))
                return
            notice = f"The answer was cut short: {error}"
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
            notice = (f"The model wrote no answer within LLM_MAX_NEW_TOKENS={self.settings.llm_max_new_tokens}"
                      + ("; raise it or turn thinking off" if parts["thinking"] else ""))
        yield "done", Answer(text=text, thinking="".join(parts["thinking"]), kind="generated",
                             citations=citation_numbers(text, [p.number for p in passages]),
                             timings=timings, notice=notice)

    def _too_small_notice(self, generator: Generator, budget: int) -> str:
        if budget <= 0:
            return (f"The context window ({generator.context_window} tokens) leaves no room for passages after "
                    f"LLM_MAX_NEW_TOKENS={self.settings.llm_max_new_tokens}; raise LLM_CONTEXT_WINDOW or lower "
                    f"LLM_MAX_NEW_TOKENS")
        return (f"The question is too long for the model's context window ({generator.context_window} tokens); "
                f"shorten it or raise LLM_CONTEXT_WINDOW")

    @staticmethod
    def _fallback(question: str, passages: Sequence[Passage], notice: str) -> Answer:
        log.info("Answering extractively: %s", notice)
        answer = extractive_answer(question, passages)
        answer.notice = notice
        return answer
