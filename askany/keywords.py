"""Keyword terms for BM25: HanLP (or jieba) words, CJK characters and bigrams, and code-like tokens.

The same `KeywordAnalyzer.terms` runs at ingestion and at query time, so a query
matches chunks exactly when they share terms. Words carry meaning; character
bigrams make a word that is missing from the segmenter's dictionary still match
(whichever way it was cut); code-like tokens (`k8s`, `ERR-2041`, `v2.3.1`)
survive whole and also as their parts.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from askany.config import Settings
from askany.errors import ConfigError

log = logging.getLogger(__name__)

CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK_RUN = re.compile(f"[{CJK}]+")
CODE_TOKEN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_]|[.\-/:#+](?=[A-Za-z0-9]))*")
HAS_WORD_CHAR = re.compile(f"[{CJK}A-Za-z0-9]")
CHAR_PREFIX = "\u00b7"  # keeps character and bigram terms apart from segmented words

# Function words that match nearly every chunk and only add noise to BM25.
STOPWORDS = frozenset(
    "的 了 是 在 和 与 及 或 也 就 都 而 被 把 对 从 到 为 以 之 其 这 那 有 个 上 下 中 我 你 他 她 它 们 "
    "吗 呢 吧 啊 哪 什么 怎么 如何 哪些 哪个 多少 是否 为什么 请问 一个".split()
)


class Segmenter(Protocol):
    name: str

    def segment(self, texts: list[str]) -> list[list[str]]: ...


class JiebaSegmenter:
    """jieba in search mode (long words also yield their sub-words)."""

    name = "jieba"

    def __init__(self, user_dict: Path | None = None):
        import jieba

        jieba.setLogLevel(logging.WARNING)  # it prints its dictionary loading to stderr otherwise
        self._tokenizer = jieba.Tokenizer()
        self._tokenizer.initialize()
        if user_dict is not None:
            self._tokenizer.load_userdict(str(user_dict))

    def segment(self, texts: list[str]) -> list[list[str]]:
        return [list(self._tokenizer.cut_for_search(text)) for text in texts]


class HanLPSegmenter:
    """A HanLP tokenizer loaded from a local folder (see models.load_hanlp_tokenizer)."""

    name = "hanlp"

    def __init__(self, component: Any, user_dict: Path | None = None):
        self._tok = component
        if user_dict is not None:
            words = _read_user_dict(user_dict)
            if words:
                self._tok.dict_force = set(words)  # user words always win, as in jieba

    def segment(self, texts: list[str]) -> list[list[str]]:
        pieces = [piece for piece in texts if piece.strip()]
        results = iter(self._tok(pieces) if pieces else [])
        return [next(results) if piece.strip() else [] for piece in texts]


def _read_user_dict(path: Path) -> list[str]:
    """jieba's user-dictionary format: a word, then optional frequency and tag."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]


def make_segmenter(settings: Settings, hanlp_component: Any | None = None) -> Segmenter:
    """HanLP when a loaded component is given, jieba otherwise (with a logged notice)."""
    if settings.user_dict is not None and not settings.user_dict.is_file():
        raise ConfigError(f"USER_DICT={settings.user_dict} does not exist; "
                                             "fix the path or leave USER_DICT empty")
    if hanlp_component is not None:
        return HanLPSegmenter(hanlp_component, settings.user_dict)
    if settings.hanlp_tok_model:
        log.warning("The HanLP tokenizer could not be loaded: falling back to jieba for tokenization")
    else:
        log.info("HANLP_TOK_MODEL is not set: using jieba for tokenization")
    return JiebaSegmenter(settings.user_dict)


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def _code_terms(text: str) -> Iterable[str]:
    for match in CODE_TOKEN.finditer(text):
        token = match.group()
        yield token
        parts = re.split(r"[.\-/:#+_]", token)
        if len(parts) > 1:
            yield from (part for part in parts if part)


def _characters(text: str) -> Iterable[str]:
    """CJK bigrams and single characters (prefixed to keep them apart from segmented words).

    Bigrams match words the segmenter cut differently or does not know; single characters rescue
    one-character overlaps. Measured on shared/eval/cmrc2018-trial (keyword channel, chunk level,
    document ranking): words+bigrams hit@1 0.978 / MRR 0.985; adding characters 0.981 / 0.988.
    """
    for run in CJK_RUN.findall(text):
        for i, char in enumerate(run):
            if char not in STOPWORDS:
                yield CHAR_PREFIX + char
            if i + 1 < len(run):
                yield CHAR_PREFIX + run[i:i + 2]


class KeywordAnalyzer:
    """Turns text into the bag of terms that the BM25 index stores and queries."""

    def __init__(self, segmenter: Segmenter):
        self.segmenter = segmenter

    @property
    def name(self) -> str:
        return f"{self.segmenter.name}+chars-v2"

    def terms_many(self, texts: list[str]) -> list[list[str]]:
        normalized = [normalize(text) for text in texts]
        words = self.segmenter.segment(normalized)
        return [self._combine(text, segmented) for text, segmented in zip(normalized, words, strict=True)]

    def terms(self, text: str) -> list[str]:
        return self.terms_many([text])[0]

    @staticmethod
    def _combine(text: str, words: list[str]) -> list[str]:
        terms = [w for w in (word.strip() for word in words)
                 if w and CJK_RUN.fullmatch(w) and w not in STOPWORDS]
        terms.extend(_code_terms(text))
        terms.extend(_characters(text))
        return terms

    @staticmethod
    def is_searchable(text: str) -> bool:
        """False for empty, whitespace-only or punctuation-only text."""
        return bool(HAS_WORD_CHAR.search(normalize(text)))
