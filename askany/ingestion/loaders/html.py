"""HTML files: the visible text of a page as Markdown-like blocks, in the page's declared charset.

BeautifulSoup keeps the whole page as Python objects (about 70 µs and 1 KB a tag here), so the tags
are counted before it starts (MAX_HTML_ELEMENTS). The HTML parsers expand no DTD entities and load
nothing: a page declaring a billion-laughs DTD or an external entity keeps the references as text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from itertools import islice
from typing import Any

from askany.ingestion.loaders.common import collapse_spaces
from askany.ingestion.loaders.decoding import decode_text, normalize_newlines
from askany.ingestion.loaders.limits import ParseLimits, over_limit
from askany.ingestion.loaders.registry import Document, register

logger = logging.getLogger(__name__)

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^<\?xml[^>]+encoding\s*=\s*["']([\w-]+)""")
_CODEC_ALIASES = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "big5": "cp950"}
_START_TAG = re.compile(r"<[A-Za-z]")  # counts every tag a parser could make, and a few "<a" in text
_DROPPED_TAGS = ("script", "style", "nav", "noscript", "template", "svg", "iframe", "head")
_HEADING_TAGS = {f"h{n}": n for n in range(1, 7)}
_LINE_TAGS = frozenset({"li", "tr", "dt", "dd"})
_BLOCK_TAGS = frozenset(
    "p div section article main header footer aside blockquote ul ol dl table thead tbody tfoot "
    "figure figcaption form fieldset details summary address caption hr center body html".split()
) | _LINE_TAGS


@register(".html", ".htm")
def parse_html(data: bytes, stem: str, limits: ParseLimits) -> Document:
    """Visible text with headings, paragraphs, list items, table rows and code kept apart."""
    from bs4 import BeautifulSoup

    markup, encoding = _decode_html(data)
    _check_tag_count(markup, limits.max_html_elements)
    soup = BeautifulSoup(markup, _html_parser())
    title_tag = soup.find("title")
    page_title = collapse_spaces(title_tag.get_text(" ")) if title_tag else ""
    for tag in soup.find_all(_DROPPED_TAGS):
        tag.decompose()
    writer = _HtmlWriter()
    writer.walk(soup)
    first_h1 = soup.find("h1")
    title = page_title or (collapse_spaces(first_h1.get_text(" ")) if first_h1 else "") or stem
    return Document(title, writer.text(), encoding)


def _check_tag_count(markup: str, limit: int) -> None:
    """Refuse a page with more than ``limit`` tags, counting no further than the limit."""
    if next(islice(_START_TAG.finditer(markup), limit, None), None) is not None:
        raise over_limit(f"HTML has more than {limit:,} elements", f"{limit:,}", "MAX_HTML_ELEMENTS")


def _decode_html(data: bytes) -> tuple[str, str]:
    """Honour a declared charset when it decodes cleanly; otherwise detect like plain text."""
    head = data[:4096]
    declared = _XML_ENCODING.search(head) or _META_CHARSET.search(head)
    if declared and b"\x00" not in data and not data.startswith(b"\xef\xbb\xbf"):
        codec = declared.group(1).decode("ascii").lower()
        codec = _CODEC_ALIASES.get(codec, codec)
        try:
            return normalize_newlines(data.decode(codec)), codec
        except (LookupError, UnicodeDecodeError):
            logger.debug("declared charset %s does not decode; detecting instead", codec)
    return decode_text(data)


def _html_parser() -> str:
    try:
        import lxml  # noqa: F401
    except ImportError:
        return "html.parser"
    return "lxml"


class _HtmlWriter:
    """Walk the DOM once, emitting headings, paragraphs, list items, table rows and code."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, bool]] = []  # (text, is_line_item)
        self.inline: list[str] = []  # text runs; _BREAK marks a <br>

    def walk(self, node: Any) -> None:
        from bs4 import NavigableString, Tag
        from bs4.element import Comment, Doctype, ProcessingInstruction

        for child in node.children:
            if isinstance(child, (Comment, Doctype, ProcessingInstruction)):
                continue
            if isinstance(child, NavigableString):
                self.inline.append(str(child))
            elif isinstance(child, Tag):
                self._tag(child)

    def _tag(self, tag: Any) -> None:
        name = tag.name
        if name in _HEADING_TAGS:
            self.flush()
            text = collapse_spaces(tag.get_text(" "))
            if text:
                self.blocks.append((f"{'#' * _HEADING_TAGS[name]} {text}", False))
        elif name == "pre":
            self.flush()
            code = tag.get_text().strip("\n")
            if code.strip():
                self.blocks.append((f"```\n{code}\n```", False))
        elif name == "br":
            self.inline.append(_BREAK)
        elif name == "tr":
            self.flush()
            cells = [collapse_spaces(cell.get_text(" ")) for cell in tag.find_all(["td", "th"])]
            if any(cells):
                self.blocks.append((" | ".join(cells), True))
        elif name in _BLOCK_TAGS:
            self.flush()
            self.walk(tag)
            self.flush(line_item=name in _LINE_TAGS)
        else:
            self.walk(tag)

    def flush(self, line_item: bool = False) -> None:
        lines = (collapse_spaces("".join(run)) for run in _split_on(self.inline, _BREAK))
        text = "\n".join(line for line in lines if line)
        self.inline = []
        if text:
            self.blocks.append((text, line_item))

    def text(self) -> str:
        """List items and table rows stay on consecutive lines; other blocks get blank lines."""
        self.flush()
        out: list[str] = []
        previous_line_item = False
        for text, line_item in self.blocks:
            if out:
                out.append("\n" if line_item and previous_line_item else "\n\n")
            out.append(text)
            previous_line_item = line_item
        return "".join(out)


_BREAK = "\x00"  # NUL never survives decoding, so it cannot collide with page text


def _split_on(items: list[str], marker: str) -> Iterator[list[str]]:
    run: list[str] = []
    for item in items:
        if item == marker:
            yield run
            run = []
        else:
            run.append(item)
    yield run
