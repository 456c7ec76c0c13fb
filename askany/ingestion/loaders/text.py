"""Plain text and Markdown files: decoded as they are, titled by their first ``# `` heading."""

from __future__ import annotations

import re

from askany.ingestion.loaders.decoding import decode_text
from askany.ingestion.loaders.limits import ParseLimits
from askany.ingestion.loaders.registry import Document, register

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".text"})

_ATX_TITLE = re.compile(r"^ {0,3}#[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


@register(*sorted(MARKDOWN_SUFFIXES))
def parse_text(data: bytes, stem: str, limits: ParseLimits) -> Document:
    """The decoded text unchanged (it already is Markdown-like); title from a heading, else the stem."""
    text, encoding = decode_text(data)
    return Document(_markdown_title(text) or stem, text, encoding)


def _markdown_title(text: str) -> str | None:
    """The first level-1 heading outside code fences."""
    in_fence = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (match := _ATX_TITLE.match(line)):
            return match.group(1).strip()
    return None
