"""Keyword terms for BM25: HanLP (or jieba) words, CJK characters and bigrams, and code-like tokens.

The same `KeywordAnalyzer.terms` runs at ingestion and at query time, so a query
matches chunks exactly when they share terms. Words carry meaning; character
bigrams make a word that is missing from the segmenter's dictionary still match
(whichever way it was cut); code-like tokens (`k8s`, `ERR-2041`, `v2.3.1`)
survive whole and also as their parts.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from askany.core.config import Settings
from askany.core.errors import ConfigError
from askany.core.text import CJK_IDEOGRAPHS

log = logging.getLogger(__name__)

CJK = CJK_IDEOGRAPHS
CJK_RUN = re.compile(f"[{CJK}]+")
CJK_BIGRAM = re.compile(f"(?=([{CJK}]{{2}}))")  # overlapping pairs, found by the regex engine in one pass
CJK_WORD = re.compile(f"(?<![^\x00])[{CJK}]+(?![^\x00])")  # a whole NUL-separated token of CJK only
CODE_TOKEN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_]|[.\-/:#+](?=[A-Za-z0-9]))*")
CODE_PART_SEPARATOR = re.compile(r"[.\-/:#+_]")
HAS_WORD_CHAR = re.compile(f"[{CJK}A-Za-z0-9]")
# Fullwidth ASCII and the ideographic space, which NFKC maps to ASCII one for one (see normalize).
FULLWIDTH = re.compile("[\u3000\uff01-\uff5e]")
FULLWIDTH_TO_ASCII = {chr(code): chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F)} | {"\u3000": " "}
WORD_PREFIX = "\u00b7"  # keeps segmented words apart from single characters and character pairs

# Function words that match nearly every chunk and only add noise to BM25.
STOPWORDS = frozenset(
    "的 了 是 在 和 与 及 或 也 就 都 而 被 把 对 从 到 为 以 之 其 这 那 有 个 上 下 中 我 你 他 她 它 们 "
    "吗 呢 吧 啊 哪 什么 怎么 如何 哪些 哪个 多少 是否 为什么 请问 一个".split()
)


class Segmenter(Protocol):
    name: str

    def segment(self, texts: list[str]) -> list[list[str]]: ...


class JiebaSegmenter:
    """jieba in search mode (long words also yield their sub-words).

    Runs on rjieba (jieba-rs, the same dictionary and algorithm in Rust: identical Chinese words on
    shared/eval, about 20 times faster) when it is installed, else on the Python jieba.
    """

    name = "jieba"

    def __init__(self, user_dict: Path | None = None):
        words = _read_user_dict(user_dict) if user_dict is not None else []
        try:
            import rjieba

            self._rust = rjieba.Jieba()
            for word, freq, tag in words:
                self._rust.add_word(word, freq, tag)
        except ImportError:
            import jieba

            self._rust = None
            jieba.setLogLevel(logging.WARNING)  # it prints its dictionary loading to stderr otherwise
            self._tokenizer = jieba.Tokenizer()
            self._tokenizer.initialize()
            if user_dict is not None:
                self._tokenizer.load_userdict(str(user_dict))

    def segment(self, texts: list[str]) -> list[list[str]]:
        if self._rust is not None:
            return [self._rust.cut_for_search(text, True) for text in texts]
        return [list(self._tokenizer.cut_for_search(text)) for text in texts]


class LazyJieba:
    """jieba, built when the first text is cut: loading its dictionary costs half a second, which a
    run that analyzes nothing (an unchanged re-ingest needs only the analyzer's name) never pays."""

    name = JiebaSegmenter.name

    def __init__(self, user_dict: Path | None = None):
        self._user_dict = user_dict
        self._jieba: JiebaSegmenter | None = None
        self._lock = threading.Lock()

    def segment(self, texts: list[str]) -> list[list[str]]:
        if self._jieba is None:
            with self._lock:
                if self._jieba is None:
                    self._jieba = JiebaSegmenter(self._user_dict)
        return self._jieba.segment(texts)


class HanLPSegmenter:
    """A HanLP tokenizer loaded from a local folder (see models.load_hanlp_tokenizer)."""

    name = "hanlp"

    def __init__(self, component: Any, user_dict: Path | None = None):
        self._tok = component
        if user_dict is not None:
            words = _read_user_dict(user_dict)
            if words:
                self._tok.dict_force = {word for word, _, _ in words}  # user words always win, as in jieba

    def segment(self, texts: list[str]) -> list[list[str]]:
        pieces = [piece for piece in texts if piece.strip()]
        results = iter(self._tok(pieces) if pieces else [])
        return [next(results) if piece.strip() else [] for piece in texts]


def _read_user_dict(path: Path) -> list[tuple[str, int | None, str | None]]:
    """jieba's user-dictionary format: a word, then optional frequency and tag: (word, freq, tag)."""
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if not fields or line.startswith("#"):
            continue
        freq = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
        tag = fields[-1] if len(fields) > 1 and not fields[-1].isdigit() else None
        entries.append((fields[0], freq, tag))
    return entries


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
    return LazyJieba(settings.user_dict)


@functools.cache
def _to_simplified() -> Any:
    import opencc

    return opencc.OpenCC("t2s")


def normalize(text: str) -> str:
    """NFKC, lower case, and Traditional characters as Simplified (OpenCC t2s), as RAGFlow does.

    A question in either script then finds a document in the other; measured in docs/keyword-index.md.
    """
    return _to_simplified().convert(_nfkc(text.replace("\x00", "")).lower())


def _nfkc(text: str) -> str:
    """unicodedata.normalize("NFKC", text), four times faster on Chinese text: its fullwidth
    punctuation (，：（）) sends the whole text down NFKC's slow path, so those characters are mapped
    first (to exactly what NFKC maps them to), and only text still not normalized pays for NFKC."""
    if unicodedata.is_normalized("NFKC", text):
        return text
    text = FULLWIDTH.sub(lambda match: FULLWIDTH_TO_ASCII[match.group()], text)
    return text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)


def _code_terms(text: str) -> list[str]:
    terms = []
    for token in CODE_TOKEN.findall(text):
        terms.append(token)
        if not token.isalnum():  # k8s, v2 have no parts; ERR-2041, v2.3.1 do
            terms.extend(part for part in CODE_PART_SEPARATOR.split(token) if part)
    return terms


def _characters(text: str) -> list[str]:
    """CJK single characters (function words left out) and overlapping character pairs.

    Bigrams match words the segmenter cut differently or does not know; single characters rescue
    one-character overlaps. Measured on shared/eval/cmrc2018-trial (keyword channel, chunk level,
    document ranking): words+bigrams hit@1 0.978 / MRR 0.985; adding characters 0.981 / 0.988.
    """
    chars = [char for char in "".join(CJK_RUN.findall(text)) if char not in STOPWORDS]
    chars.extend(CJK_BIGRAM.findall(text))
    return chars


@dataclass(frozen=True)
class TermBag:
    """A text's keyword terms as the index stores them: each distinct term once, NUL-separated
    (`names`), how often each occurs (`counts`, uint16), and how many terms the text has in all
    (`total`, BM25's length). One string and one bytes object join and pickle far faster than a
    list of hundreds of short strings, and ingestion moves hundreds of thousands of them."""

    names: str
    counts: bytes
    total: int

    @classmethod
    def of(cls, terms: list[str]) -> TermBag:
        counted = Counter(terms)
        counts = np.fromiter(counted.values(), dtype=np.int64, count=len(counted))
        return cls("\x00".join(counted), np.minimum(counts, 65535).astype("<u2").tobytes(), len(terms))

    def items(self) -> dict[str, int]:
        """{term: count}, for checks and tests."""
        if not self.names:
            return {}
        return dict(zip(self.names.split("\x00"), np.frombuffer(self.counts, dtype="<u2").tolist(), strict=True))


class KeywordAnalyzer:
    """Turns text into the bag of terms that the BM25 index stores and queries."""

    def __init__(self, segmenter: Segmenter):
        self.segmenter = segmenter

    @property
    def name(self) -> str:
        return f"{self.segmenter.name}+chars-v3+t2s"

    def terms_many(self, texts: list[str]) -> list[list[str]]:
        normalized = [normalize(text) for text in texts]
        words = self.segmenter.segment(normalized)
        return [self._combine(text, segmented) for text, segmented in zip(normalized, words, strict=True)]

    def terms(self, text: str) -> list[str]:
        return self.terms_many([text])[0]

    def bags(self, texts: list[str]) -> list[TermBag]:
        """The terms of each text as the index stores them."""
        return [TermBag.of(terms) for terms in self.terms_many(texts)]

    @staticmethod
    def _combine(text: str, words: list[str]) -> list[str]:
        # The segmenter's all-CJK words, found in one regex pass over the joined words.
        terms = [WORD_PREFIX + word for word in CJK_WORD.findall("\x00".join(words)) if word not in STOPWORDS]
        terms.extend(_code_terms(text))
        terms.extend(_characters(text))
        return terms

    @staticmethod
    def is_searchable(text: str) -> bool:
        """False for empty, whitespace-only or punctuation-only text."""
        return bool(HAS_WORD_CHAR.search(normalize(text)))
