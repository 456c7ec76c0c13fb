"""PowerPoint (.pptx) decks: slide by slide, the title as a ``#`` heading, then text frames and
tables in reading order (top to bottom, left to right; grouped shapes opened), then the speaker
notes. Each slide's text follows a slide line (``chunking.location_line``), so every chunk knows
its slide. Pictures and charts hold no text here (pictures are not sent to OCR).

python-pptx parses every XML part of the package when it opens it, so the archive passes
``archive.open_archive`` and every XML member's elements are counted against MAX_XML_ELEMENTS
(through the capped archive, at unpacking speed) before python-pptx sees the file.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from askany.ingestion.chunking import location_line
from askany.ingestion.loaders.archive import open_archive
from askany.ingestion.loaders.common import collapse_spaces, labelled_row, short_error
from askany.ingestion.loaders.limits import ParseLimits, WorkBudget
from askany.ingestion.loaders.registry import Document, FileSkipped, register
from askany.ingestion.loaders.safe_xml import count_elements

NOTES_LABEL = "备注"


@register(".pptx", requires=("pptx",))
def parse_pptx(data: bytes, stem: str, limits: ParseLimits) -> Document:
    """Every slide's title, text, tables and notes; title from the properties, the first slide or the stem."""
    from pptx import Presentation

    archive = open_archive(data, "PPTX", limits)
    budget = WorkBudget("PPTX", limits.max_xml_elements, "XML elements", "MAX_XML_ELEMENTS")
    for name in archive.names():
        if name.endswith((".xml", ".rels")):
            with archive.open(name) as stream:
                count_elements(stream, name, budget)
    try:
        presentation = Presentation(io.BytesIO(data))
        slides = [(number, *_slide(slide, number)) for number, slide in enumerate(presentation.slides, start=1)]
        title = collapse_spaces(presentation.core_properties.title or "")
    except FileSkipped:
        raise
    except Exception as error:  # noqa: BLE001 - python-pptx raises KeyError, ValueError, lxml and zip errors
        raise FileSkipped(f"corrupt PPTX: {short_error(error)}") from None
    text = "\n\n".join(f"{location_line('slide', number)}\n# {heading or f'幻灯片 {number}'}\n\n{body}".rstrip()
                       for number, heading, body in slides if heading or body)
    first = next((heading for _, heading, _ in slides if heading), "")
    return Document(title or first or stem, text)


def _slide(slide: Any, number: int) -> tuple[str, str]:
    """(title, body) of one slide: the title placeholder's text, and everything else with the notes."""
    title_shape = slide.shapes.title
    title = collapse_spaces(_frame_text(title_shape.text_frame)) if title_shape is not None else ""
    title_id = title_shape.shape_id if title_shape is not None else None  # python-pptx makes new proxies
    blocks = [block for shape in _reading_order(slide.shapes) if shape.shape_id != title_id
              for block in _shape_blocks(shape)]
    if slide.has_notes_slide:
        notes_frame = slide.notes_slide.notes_text_frame
        notes = _frame_text(notes_frame).strip() if notes_frame is not None else ""
        if notes:
            blocks.append(f"{NOTES_LABEL}：{notes}")
    return title, "\n\n".join(blocks)


def _reading_order(shapes: Any) -> list[Any]:
    return sorted(shapes, key=lambda shape: (shape.top or 0, shape.left or 0))


def _shape_blocks(shape: Any) -> Iterator[str]:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
        for member in _reading_order(shape.shapes):
            yield from _shape_blocks(member)
    elif getattr(shape, "has_table", False) and shape.has_table:
        rows = _table_rows(shape.table)
        if rows:
            yield "\n".join(rows)
    elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        text = _frame_text(shape.text_frame).strip()
        if text:
            yield text


def _frame_text(frame: Any) -> str:
    """Paragraphs one a line; a line break inside a paragraph (python-pptx's vertical tab) too."""
    lines = (collapse_spaces(paragraph.text.replace("\v", "\n")) for paragraph in frame.paragraphs)
    return "\n".join(line for line in lines if line)


def _table_rows(table: Any) -> list[str]:
    """One line per row, each value after its column's name from the first row; a merged cell once."""
    grid = [[collapse_spaces(cell.text.replace("\v", " ")) if not cell.is_spanned else None for cell in row.cells]
            for row in table.rows]
    if not grid:
        return []
    header = [text or "" for text in grid[0]]
    labelled = len(grid) > 1 and sum(1 for text in header if text) >= 2
    rows = [] if labelled else [" | ".join(text for text in grid[0] if text)]
    for cells in grid[1:]:
        columns = [index for index, text in enumerate(cells) if text]
        if columns:
            rows.append(labelled_row([header[index] if labelled else "" for index in columns],
                                     [cells[index] or "" for index in columns]))
    return [row for row in rows if row]
