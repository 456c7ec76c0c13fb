"""Qwen3's ``<think>…</think>`` block: separating the model's hidden reasoning from the answer, also mid-stream."""

from __future__ import annotations

from typing import Literal

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that could start `tag` (a tag or stop string split across pieces)."""
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
                keep = partial_suffix(self._buffer, THINK_CLOSE)
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
