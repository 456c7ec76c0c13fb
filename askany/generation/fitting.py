"""Fitting passages into the model's context window: drop the lowest-ranked ones, cut one too long alone."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from askany.generation.prompt import TRUNCATION_MARK, Message, Passage, build_messages, prompt_text

log = logging.getLogger(__name__)


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
