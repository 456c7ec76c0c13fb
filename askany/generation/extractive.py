"""The extractive fallback: answer without an LLM by quoting the passages' best-matching sentences, cited.

Used when no model is configured or it cannot run, so a question always gets an
answer (the evidence itself) and never a traceback.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence

from askany.core.text import CJK_IDEOGRAPHS
from askany.generation.answer import Answer, citation_numbers
from askany.generation.prompt import NO_ANSWER, NOTHING_FOUND, TRUNCATION_MARK, Passage

log = logging.getLogger(__name__)

_SENTENCE = re.compile(r"[^。！？；!?;…\n]+?(?:[。！？；!?;…]+[”’」』）)\]]*|\.(?=\s)|\n|$)")
_CJK_RUN = re.compile(f"[{CJK_IDEOGRAPHS}]+")
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
