"""PDF files: the text layer of every page, with Chinese lines re-joined where the PDF wrapped them.

The page count is checked (MAX_PDF_PAGES) before any text is extracted: first the count the page
tree declares, which costs nothing, then the pages pypdf actually finds, in case it lied. pypdf
itself bounds what a stream may decompress to and how deep and large the page tree may be.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any

from askany.core.text import CJK_TEXT
from askany.ingestion.loaders.common import short_error
from askany.ingestion.loaders.decoding import normalize_newlines
from askany.ingestion.loaders.limits import ParseLimits, over_limit
from askany.ingestion.loaders.registry import Document, FileSkipped, register

logger = logging.getLogger(__name__)

_CJK_END = re.compile(f"[{CJK_TEXT}]$")
_CJK_START = re.compile(f"^[{CJK_TEXT}]")
_CJK_SENTENCE_END = re.compile(r"[。！？；：]$")


@register(".pdf", empty_reason="no extractable text (scanned or image-only PDF?)")
def parse_pdf(data: bytes, stem: str, limits: ParseLimits) -> Document:
    """Text of every page, pages separated by blank lines; title from metadata or first line."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        _unlock(reader)
        _check_page_count(_declared_page_count(reader), limits.max_pdf_pages)
        pages = list(reader.pages)
        _check_page_count(len(pages), limits.max_pdf_pages)
    except FileSkipped:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as error:
        raise FileSkipped(f"corrupt PDF: {short_error(error)}") from None
    texts = [_join_wrapped_lines(text) for text in _page_texts(pages)]
    text = "\n\n".join(t for t in texts if t.strip())
    return Document(_pdf_title(reader) or _first_line(text) or stem, text)


def _unlock(reader: Any) -> None:
    """Open PDFs encrypted with an empty user password (viewable by anyone); refuse the rest."""
    if not reader.is_encrypted:
        return
    try:
        unlocked = reader.decrypt("")
    except Exception as error:  # pypdf raises DependencyError, NotImplementedError, ...
        raise FileSkipped(f"encrypted PDF ({short_error(error)})") from None
    if not unlocked:
        raise FileSkipped("encrypted PDF (password required)")


def _declared_page_count(reader: Any) -> int:
    """/Count of the page tree's root: read without walking the tree (0 when absent or not a number)."""
    tree = reader.trailer["/Root"]["/Pages"]
    count = tree["/Count"] if "/Count" in tree else 0  # [] resolves an indirect object, .get would not
    return count if isinstance(count, int) else 0


def _check_page_count(count: int, limit: int) -> None:
    if count > limit:
        raise over_limit(f"PDF has {count:,} pages", f"{limit:,}", "MAX_PDF_PAGES")


def _page_texts(pages: Iterable[Any]) -> Iterator[str]:
    for number, page in enumerate(pages, start=1):
        try:
            yield normalize_newlines(page.extract_text() or "")
        except Exception as error:  # one broken page should not lose the rest
            logger.warning("PDF page %d: text extraction failed (%s); page skipped", number, short_error(error))


def _join_wrapped_lines(text: str) -> str:
    """Undo PDF line wrapping inside Chinese sentences (``数据\\n库`` would split the word).

    Only full-width lines (at least 80 % of the page's longest line) that end and
    continue with CJK characters are joined, so short headings keep their own line.
    """
    lines = [line.rstrip() for line in text.split("\n")]
    longest = max((len(line) for line in lines), default=0)
    out: list[str] = []
    for line in lines:
        if out and _wraps(out[-1], line, longest):
            out[-1] += line.lstrip()
        else:
            out.append(line)
    return "\n".join(out)


def _wraps(previous: str, line: str, longest: int) -> bool:
    return (
        len(previous) >= 0.8 * longest
        and bool(_CJK_END.search(previous))
        and not _CJK_SENTENCE_END.search(previous)
        and bool(_CJK_START.match(line.lstrip()))
    )


def _pdf_title(reader: Any) -> str | None:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # broken metadata is not worth skipping the file
        return None
    cleaned = str(title or "").strip()
    return cleaned or None


def _first_line(text: str, limit: int = 100) -> str | None:
    # Not askany.core.text.first_line: that one splits on every str.splitlines() boundary (form
    # feeds too) and has no length cap; a title here is cut at ``limit`` characters.
    line = next((line.strip() for line in text.split("\n") if line.strip()), "")
    return line[:limit] or None
