"""Small text helpers every layer uses: tag lists, one-line error messages, CJK character classes."""

from __future__ import annotations

import re
from collections.abc import Sequence

#: CJK ideographs (unified, extension A, compatibility): what keyword terms are made of.
CJK_IDEOGRAPHS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
#: Wider: CJK symbols and punctuation, fullwidth forms, Hangul, extension planes: what costs a token each.
CJK_WIDE = ("\u2e80-\u2fff\u3001-\u9fff\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef"
            "\U00020000-\U0003ffff")
#: Ideographs plus CJK punctuation and fullwidth forms: where a line break between two is no space.
CJK_TEXT = "\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef"

_TAG_SEPARATORS = re.compile(r"[,，、]")
_WIDE_RUN = re.compile(f"[{CJK_WIDE}]+")
#: A citation marker in an answer: [1], [1, 3], 【2】, [1，2、3].
CITATION = re.compile(r"[\[【]\s*(\d+(?:\s*[,，、;；]\s*\d+)*)\s*[\]】]")


def is_utf8(text: str) -> bool:
    """False for text holding lone surrogates: bytes that were not UTF-8 (a file name, a terminal in
    another encoding) or a forged escape. Postgres cannot store it and tokenizers refuse it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def estimate_tokens(text: str) -> int:
    """A model's token count without its tokenizer: one per CJK (wide) character, one per four others.

    Whitespace is free, so the estimate of a joined text never exceeds the sum of its parts (the
    chunker relies on that). Real tokenizers pack common Chinese a little tighter: this errs on the
    large side. Counted by runs, and by str.split (which cuts exactly where regex \\s matches): the
    chunker calls it for every sentence of every document.
    """
    wide = sum(map(len, _WIDE_RUN.findall(text)))
    other = len("".join(text.split())) - wide
    return wide + (other + 3) // 4


def split_tags(value: str | Sequence[str] | None) -> list[str]:
    """Tags from "a,b，c" (or a list of them), trimmed, empty ones dropped, order kept."""
    if not value:
        return []
    items = _TAG_SEPARATORS.split(value) if isinstance(value, str) else [part for item in value
                                                                        for part in _TAG_SEPARATORS.split(item)]
    return list(dict.fromkeys(item.strip() for item in items if item and item.strip()))


def first_line(error: BaseException | str) -> str:
    """The first non-empty line of an error's message (server errors often add pages of detail)."""
    text = str(error).strip()
    return next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__
                if isinstance(error, BaseException) else "")
