"""Small helpers more than one format parser uses: browser-like whitespace, table rows, short error
text, sizes."""

from __future__ import annotations

import re

from askany.core.text import CJK_TEXT

_WHITESPACE_RUN = re.compile(r"\s+")
# A source line break between two Chinese characters is no word boundary, so no space either.
_NEWLINE_BETWEEN_CJK = re.compile(rf"(?<=[{CJK_TEXT}])[ \t]*\n\s*(?=[{CJK_TEXT}])")


def collapse_spaces(text: str) -> str:
    """Collapse whitespace like a browser, except source line breaks between Chinese characters vanish."""
    text = _NEWLINE_BETWEEN_CJK.sub("", text.replace("\xa0", " "))
    return _WHITESPACE_RUN.sub(" ", text).strip()


def short_error(error: BaseException, limit: int = 120) -> str:
    """An exception's message cut to ``limit`` characters, fit for a one-line skip reason."""
    message = str(error).strip() or type(error).__name__
    return message if len(message) <= limit else message[: limit - 1] + "…"


def format_size(size: int) -> str:
    """``52428800`` -> ``50 MB``: sizes in reasons, in the units the settings use."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size}-byte"


def labelled_row(labels: list[str], values: list[str]) -> str:
    """A table row as one line that names each value's column: ``用例编号: TC-001 | 模块: 登录``
    (a value without a column name stands alone)."""
    return " | ".join(f"{label}: {value}" if label and label != value else value
                      for label, value in zip(labels, values, strict=True))
