"""FAQ files (.json, .jsonl, .csv): question/answer entries instead of text, one chunk each.

Field names are recognised in English and Chinese (question/问题, answer/答案, tags/标签); invalid
records are skipped with a capped number of warnings, so one bad row never loses the file.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from askany.ingestion.loaders.decoding import decode_text, normalize_newlines
from askany.ingestion.loaders.limits import ParseLimits
from askany.ingestion.loaders.registry import FaqEntry, Faqs, FileSkipped, register

logger = logging.getLogger(__name__)


def _faq_loader(parse_text: Callable[[str], list[FaqEntry]]) -> Callable[[bytes, str, ParseLimits], Faqs]:
    """A registry parser from a text-to-entries parser: decode first, refuse blank files."""

    def parse(data: bytes, stem: str, limits: ParseLimits) -> Faqs:
        text, encoding = decode_text(data)
        if not text.strip():
            raise FileSkipped("empty file")
        return Faqs(parse_text(text), encoding)

    return parse


_FIELD_NAMES = {
    "question": ("question", "q", "问题", "問題"),
    "answer": ("answer", "a", "答案", "回答", "答"),
    "tags": ("tags", "tag", "标签", "標籤"),
}
# Wider than askany.core.text.split_tags' separators: FAQ files also separate tags with ; and ；.
_TAG_SEPARATORS = re.compile(r"[,;，；、]")


_TOO_DEEP = "invalid JSON: nested too deeply"


def _parse_faq_json(text: str) -> list[FaqEntry]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise FileSkipped(f"invalid JSON: line {error.lineno}: {error.msg}") from None
    except RecursionError:  # "[[[[..." 100,000 deep: Python's parser recurses per level
        raise FileSkipped(_TOO_DEEP) from None
    if isinstance(data, dict) and isinstance(data.get("faqs"), list):
        data = data["faqs"]
    if not isinstance(data, list):
        raise FileSkipped('not an FAQ file: expected a list of {"question", "answer"} objects or {"faqs": [...]}')
    return _valid_entries(enumerate(data, start=1), "item")


def _parse_faq_jsonl(text: str) -> list[FaqEntry]:
    def records() -> Iterator[tuple[int, Any]]:
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                yield number, _BadRecord(f"invalid JSON ({error.msg})")
            except RecursionError:
                yield number, _BadRecord(_TOO_DEEP)

    return _valid_entries(records(), "line")


def _parse_faq_csv(text: str) -> list[FaqEntry]:
    lines = text.lstrip("\n").split("\n", 1)
    delimiter = max(",\t;", key=lines[0].count)
    reader = csv.reader(io.StringIO(text.lstrip("\n")), delimiter=delimiter)
    header = next(reader, [])
    columns = {_canonical_field(name): index for index, name in enumerate(header)}
    if "question" not in columns or "answer" not in columns:
        found = ", ".join(h.strip() for h in header) or "nothing"
        raise FileSkipped(f"CSV needs question/answer (问题/答案) columns; found {found}")

    def records() -> Iterator[tuple[int, Any]]:
        for number, row in enumerate(reader, start=2):
            if any(cell.strip() for cell in row):
                yield number, {key: row[index] if index < len(row) else "" for key, index in columns.items() if key}

    return _valid_entries(records(), "row")


def _canonical_field(name: str) -> str | None:
    name = unicodedata.normalize("NFKC", name).strip().lower()
    return next((key for key, names in _FIELD_NAMES.items() if name in names), None)


_MAX_ROW_WARNINGS = 5


def _valid_entries(records: Iterable[tuple[int, Any]], unit: str) -> list[FaqEntry]:
    """Keep valid entries; warn about the first few invalid ones and summarise the rest."""
    entries, invalid = [], 0
    for number, record in records:
        entry = _faq_entry(record)
        if isinstance(entry, FaqEntry):
            entries.append(entry)
            continue
        invalid += 1
        if invalid <= _MAX_ROW_WARNINGS:
            logger.warning("FAQ %s %d: %s; skipped", unit, number, entry)
    if invalid > _MAX_ROW_WARNINGS:
        logger.warning("FAQ: %d more invalid %ss skipped", invalid - _MAX_ROW_WARNINGS, unit)
    return entries


class _BadRecord(str):
    """A record that could not even be parsed; the string says why."""


def _faq_entry(record: Any) -> FaqEntry | str:
    """An entry, or a string saying why the record is invalid."""
    if isinstance(record, _BadRecord):
        return str(record)
    if not isinstance(record, dict):
        return f"expected an object, got {type(record).__name__}"
    fields = {_canonical_field(str(key)): value for key, value in record.items()}
    question, answer = fields.get("question"), fields.get("answer")
    if not isinstance(question, str) or not question.strip():
        return "missing or empty question"
    if not isinstance(answer, str) or not answer.strip():
        return "missing or empty answer"
    return FaqEntry(normalize_newlines(question).strip(), normalize_newlines(answer).strip(), _tags(fields.get("tags")))


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        parts: Iterable[Any] = _TAG_SEPARATORS.split(value)
    elif isinstance(value, list):
        parts = value
    else:
        logger.warning("FAQ tags must be a list or a comma-separated string, got %s; ignored", type(value).__name__)
        return []
    return [str(part).strip() for part in parts if str(part).strip()]


register(".json")(_faq_loader(_parse_faq_json))
register(".jsonl")(_faq_loader(_parse_faq_jsonl))
register(".csv")(_faq_loader(_parse_faq_csv))
