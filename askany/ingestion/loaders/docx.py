"""Word (.docx) files: paragraphs and tables in document order, heading styles as ``#`` lines."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any
from zipfile import BadZipFile

from askany.ingestion.loaders.common import collapse_spaces, short_error
from askany.ingestion.loaders.registry import Document, FileSkipped, register

# Built-in heading styles as Word names them in English, simplified and traditional Chinese.
_HEADING_STYLE = re.compile(r"^(?:heading|标题|標題)\s*(\d)$", re.IGNORECASE)


@register(".docx")
def parse_docx(data: bytes, stem: str) -> Document:
    """Paragraphs and tables in document order; heading styles become ``#`` lines."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from lxml.etree import XMLSyntaxError

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = list(_docx_blocks(document))
        core_title = (document.core_properties.title or "").strip()
    except (PackageNotFoundError, BadZipFile, XMLSyntaxError, KeyError, ValueError, OSError) as error:
        raise FileSkipped(f"corrupt DOCX: {short_error(error)}") from None
    headings = (b.lstrip("# ") for b in blocks if b.startswith("#"))
    title = core_title or next(headings, None) or stem
    return Document(title, "\n\n".join(blocks))


def _docx_blocks(document: Any) -> Iterator[str]:
    from docx.table import Table

    for item in document.iter_inner_content():
        if isinstance(item, Table):
            rows = _docx_table_rows(item)
            if rows:
                yield "\n".join(rows)
            continue
        text = collapse_spaces(item.text)
        if not text:
            continue
        level = _docx_heading_level(item)
        yield f"{'#' * level} {text}" if level else text


def _docx_heading_level(paragraph: Any) -> int:
    try:
        name = (paragraph.style.name or "").strip() if paragraph.style is not None else ""
    except (KeyError, ValueError):
        return 0
    if name.lower() == "title":
        return 1
    match = _HEADING_STYLE.match(name)
    return min(int(match.group(1)), 6) if match and int(match.group(1)) > 0 else 0


def _docx_table_rows(table: Any) -> list[str]:
    """One line per row, cells joined with `` | ``; merged cells appear once."""
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(collapse_spaces(cell.text))
        if any(cells):
            rows.append(" | ".join(cells))
    return rows
