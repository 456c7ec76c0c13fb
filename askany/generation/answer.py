"""What an answer is: its text, hidden thinking, how it was made, its timings, and the [n] citations it makes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from askany.core.text import CITATION

AnswerKind = Literal["generated", "extracted", "faq", "none"]


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


def citation_numbers(text: str, passage_numbers: Iterable[int]) -> list[int]:
    """Numbers cited as [1], [1][2], [1, 2], [1,2] or 【1】 that name real passages, first appearance first."""
    known = set(passage_numbers)
    found: list[int] = []
    for match in CITATION.finditer(text):
        for number in (int(n) for n in re.findall(r"\d+", match.group(1))):
            if number in known and number not in found:
                found.append(number)
    return found
