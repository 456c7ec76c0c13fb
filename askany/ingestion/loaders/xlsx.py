"""Excel (.xlsx) workbooks: each sheet a ``#`` section, each row a paragraph that names its columns.

A row of a test-case or inventory sheet is a record: ``用例编号: TC-001 | 模块: 登录 | 预期结果: ...``
is found by any of its cells, and a chunk read alone still says which column a value came from.
The header is the first row of at least two text cells among a sheet's first rows (rows before
it, such as a title, are kept as text); a sheet without one gets its cells joined with `` | ``.

Merged cells hold their value in the top-left cell only; here every row a vertical merge spans
repeats the value (each record is complete), and a horizontal merge appears once a row. Formulas
are read as the values Excel cached when the file was last saved (openpyxl ``data_only``); a file
written by a program that does not calculate has none, and such cells are empty. Empty rows and
columns are skipped.

Bounds: the archive passes ``archive.open_archive`` first; each sheet's XML is read once through
the capped archive (``safe_xml``, which charges its elements to MAX_XML_ELEMENTS and collects the
merged ranges), then openpyxl streams the rows in read-only mode, every cell (filled ones too)
charged to the same budget.
"""

from __future__ import annotations

import datetime as dt
import io
import warnings
from collections.abc import Iterator
from typing import Any

from askany.ingestion.loaders.archive import Archive, open_archive
from askany.ingestion.loaders.common import collapse_spaces, labelled_row, short_error
from askany.ingestion.loaders.limits import ParseLimits, WorkBudget
from askany.ingestion.loaders.registry import Document, FileSkipped, register
from askany.ingestion.loaders.safe_xml import iter_elements, release

_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_HEADER_SEARCH_ROWS = 5  # non-empty rows at the top of a sheet where a header row is looked for
_MAX_MERGE_COLUMNS = 1024  # a merge wider than this is cut (columns past it hold nothing readable)


@register(".xlsx", requires=("openpyxl",))
def parse_xlsx(data: bytes, stem: str, limits: ParseLimits) -> Document:
    """Every worksheet's rows under its name as a heading; title from the properties or the stem."""
    from openpyxl import load_workbook
    from openpyxl.worksheet._read_only import ReadOnlyWorksheet

    archive = open_archive(data, "XLSX", limits)
    budget = WorkBudget("XLSX", limits.max_xml_elements, "XML elements and cells", "MAX_XML_ELEMENTS")
    try:
        with warnings.catch_warnings():  # "Data Validation extension is not supported" and the like
            warnings.simplefilter("ignore")
            workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except FileSkipped:
        raise
    except Exception as error:  # noqa: BLE001 - openpyxl raises KeyError, ValueError, TypeError, zip errors...
        raise FileSkipped(f"corrupt XLSX: {short_error(error)}") from None
    try:
        sections = []
        for sheet in workbook.worksheets:
            if not isinstance(sheet, ReadOnlyWorksheet):
                continue
            part = str(getattr(sheet, "_worksheet_path", "") or "")
            merges = _merged_ranges(archive, part, budget) if part else []
            sheet.reset_dimensions()  # the declared size can be wrong (some writers put A1): read what is there
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    lines = list(_sheet_lines(sheet.iter_rows(values_only=True), merges, part, budget))
            except FileSkipped:
                raise
            except Exception as error:  # noqa: BLE001 - a broken sheet XML, an unknown cell type
                raise FileSkipped(f"corrupt XLSX: sheet {sheet.title}: {short_error(error)}") from None
            if lines:
                sections.append(f"# {collapse_spaces(sheet.title) or 'Sheet'}\n\n" + "\n\n".join(lines))
        title = collapse_spaces(str(workbook.properties.title or "")) if workbook.properties else ""
    finally:
        workbook.close()
    return Document(title or stem, "\n\n".join(sections))


def _merged_ranges(archive: Archive, part: str, budget: WorkBudget) -> list[tuple[int, int, int, int]]:
    """(first row, first column, last row, last column), 1-based, of each merged range of a sheet."""
    from openpyxl.utils.cell import range_boundaries

    if not archive.has(part):
        return []
    ranges = []
    with archive.open(part) as stream:
        for element in iter_elements(stream, part, budget, tags=(f"{_MAIN}mergeCell", f"{_MAIN}row")):
            if element.tag == f"{_MAIN}mergeCell":
                try:
                    first_column, first_row, last_column, last_row = range_boundaries(element.get("ref") or "")
                except (TypeError, ValueError):
                    continue
                if first_row and first_column and last_row and last_column:
                    ranges.append((first_row, first_column, last_row,
                                   min(last_column, first_column + _MAX_MERGE_COLUMNS - 1)))
            release(element)
    return ranges


def _sheet_lines(rows: Iterator[tuple[Any, ...]], merges: list[tuple[int, int, int, int]], part: str,
                 budget: WorkBudget) -> Iterator[str]:
    """One line per non-empty row, in order: text before the header, then labelled rows."""
    anchors = {(merge[0], merge[1]): merge for merge in merges}
    spanning: list[tuple[tuple[int, int, int, int], str]] = []  # merges reached so far, with their value
    header: list[str] | None = None
    seen_rows = cells = 0
    for number, values in enumerate(rows, start=1):
        texts = [_cell_text(value) for value in values]
        cells += len(texts) + 1
        budget.reach(f"{part}#cells", cells)
        owner: dict[int, tuple[int, int, int, int]] = {}  # column -> the merge that filled it
        for column, text in enumerate(texts, start=1):
            if text and (number, column) in anchors:
                spanning.append((anchors[(number, column)], text))
        own = any(texts)
        spanning = [(merge, text) for merge, text in spanning if merge[2] >= number]
        for merge, text in spanning:
            first_row, first_column, _, last_column = merge
            if len(texts) < last_column:
                texts.extend([""] * (last_column - len(texts)))
            cells += last_column - first_column + 1
            for column in range(first_column, last_column + 1):
                texts[column - 1] = text
                owner[column] = merge
        budget.reach(f"{part}#cells", cells)
        if not own:
            continue  # an empty row, or one that only a vertical merge reaches
        columns = [column for column in range(1, len(texts) + 1) if texts[column - 1]
                   and not (column - 1 in owner and owner[column - 1] == owner.get(column))]
        seen_rows += 1
        if header is None and seen_rows <= _HEADER_SEARCH_ROWS and _is_header(values, texts, columns):
            header = texts  # every column, a merged header cell over each column it spans
            continue
        labels = [header[column - 1] if header and column <= len(header) else "" for column in columns]
        yield labelled_row(labels, [texts[column - 1] for column in columns])


def _is_header(values: tuple[Any, ...], texts: list[str], columns: list[int]) -> bool:
    """At least two distinct cells, all text (not numbers or dates)."""
    if len({texts[column - 1] for column in columns}) < 2:
        return False
    return all(isinstance(values[column - 1], str) if column <= len(values) else True for column in columns)


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return f"{value:.15g}"
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return collapse_spaces(str(value))
