"""Which parser handles which file extension, and ``load_file``, the one entry point that uses it.

A format module registers its parser for a set of suffixes with ``@register(".pdf")``; the
parser gets the file's bytes, its stem and the ``ParseLimits`` (how much work the file may cost,
see ``limits``) and returns a ``Document`` (title, Markdown-like text, encoding) or ``Faqs``
(question/answer entries). Everything formats have in common lives
here, once: the existence/type/extension/size checks before reading, and the "nothing to
index" checks after parsing. Adding a format is one new module that registers itself (and an
import line in ``__init__``); ``requires=`` keeps an optional format unregistered, and so
unsupported, when its dependency is not installed.

Anything a user should hear about ("this file was skipped, and why") is raised as
``FileSkipped`` with a short human ``reason``; callers log it and move on.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from askany.core.errors import AskAnyError
from askany.ingestion.loaders.common import format_size

if TYPE_CHECKING:
    from askany.ingestion.loaders.limits import ParseLimits

logger = logging.getLogger(__name__)


class FileSkipped(AskAnyError):
    """A file that cannot be indexed; ``reason`` says why in a few words."""

    def __init__(self, reason: str, path: Path | None = None):
        self.reason = reason
        self.path = path
        super().__init__(f"Skipped {path}: {reason}" if path else f"Skipped: {reason}")


@dataclass
class FaqEntry:
    question: str
    answer: str
    tags: list[str] = field(default_factory=list)


@dataclass
class LoadedFile:
    """One parsed file: ``text`` for documents, ``faqs`` (and empty text) for FAQ files."""

    path: Path
    title: str
    text: str
    faqs: list[FaqEntry]
    encoding: str | None


@dataclass
class Document:
    """What a document parser returns: Markdown-like text (``#`` headings) and its title."""

    title: str
    text: str
    encoding: str | None = None


@dataclass
class Faqs:
    """What an FAQ parser returns: entries that are each already a self-contained chunk."""

    entries: list[FaqEntry]
    encoding: str | None = None


#: A parser: (file bytes, file stem for a fallback title, limits) -> Document or Faqs; raises FileSkipped.
Parser = Callable[[bytes, str, "ParseLimits"], Document | Faqs]


@dataclass(frozen=True)
class _Loader:
    parse: Parser
    empty_reason: str  # the skip reason when the parsed text is blank
    needs_ocr: bool  # only read when OCR is on (ParseLimits.ocr): images
    uses_ocr: bool  # what it reads depends on whether OCR is on: images, PDFs (their scanned pages)


_LOADERS: dict[str, _Loader] = {}
_MISSING: dict[str, tuple[str, ...]] = {}  # suffix -> the modules its loader needs that are not installed
# Callers that hand over bytes (the ingestion pipeline) check the suffix themselves; bytes that
# come with any other suffix have always been read as plain text, so they still are.
_FALLBACK_SUFFIX = ".txt"


def register(*suffixes: str, empty_reason: str = "empty file", requires: tuple[str, ...] = (),
             needs_ocr: bool = False, uses_ocr: bool = False) -> Callable[[Parser], Parser]:
    """Decorator: ``parse`` handles ``suffixes`` (lower case, with the dot).

    ``requires`` names modules the parser imports; if any is missing the suffixes stay
    unregistered, so such files are skipped as "unsupported extension" (naming the missing
    modules) instead of failing. ``needs_ocr`` suffixes are unsupported while OCR is off;
    ``uses_ocr`` ones read more with it (a stored file is read again when OCR is turned on).
    """

    def decorator(parse: Parser) -> Parser:
        missing = tuple(name for name in requires if not importable(name))
        if missing:
            logger.debug("no loader for %s: %s not installed", ", ".join(suffixes), ", ".join(missing))
            _MISSING.update(dict.fromkeys(suffixes, missing))
            return parse
        for suffix in suffixes:
            if suffix in _LOADERS:  # two modules claiming one suffix is a programming error
                raise ValueError(f"a loader for {suffix} is already registered")
            _LOADERS[suffix] = _Loader(parse, empty_reason, needs_ocr, needs_ocr or uses_ocr)
        return parse

    return decorator


def importable(name: str) -> bool:
    """Whether a module can be imported, found without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a missing parent package of a dotted name
        return False


def supported_suffixes() -> frozenset[str]:
    """Every suffix a loader is registered for (complete once the package has been imported)."""
    return frozenset(_LOADERS)


def uses_ocr(suffix: str) -> bool:
    """Whether what is read from files with ``suffix`` depends on OCR being on."""
    loader = _LOADERS.get(suffix)
    return loader is not None and loader.uses_ocr


def unsupported_reason(suffix: str, limits: ParseLimits) -> str | None:
    """Why files with ``suffix`` (lower case) are not read under ``limits``; None if they are."""
    loader = _LOADERS.get(suffix)
    if loader is not None and (limits.ocr or not loader.needs_ocr):
        return None
    reason = f"unsupported extension {suffix or '(none)'}"
    if loader is not None:
        return f"{reason} (images are read by OCR, which is off: OCR_ENABLED=false)"
    if suffix in _MISSING:
        return f"{reason} (reading it needs {', '.join(_MISSING[suffix])}: pip install them)"
    return reason


# --------------------------------------------------------------------------- entry point


def load_file(path: Path, max_bytes: int, data: bytes | None = None,
              limits: ParseLimits | None = None) -> LoadedFile:
    """Read (unless its bytes are given) and parse ``path``; raise ``FileSkipped`` for anything that
    cannot be indexed. ``limits`` default to those of the process-wide settings."""
    path = Path(path)
    if limits is None:
        from askany.core.config import get_settings
        from askany.ingestion.loaders.limits import ParseLimits

        limits = ParseLimits.from_settings(get_settings())
    try:
        return _load(path, max_bytes, data, limits)
    except FileSkipped as skipped:
        if skipped.path is None:
            raise FileSkipped(skipped.reason, path) from skipped
        raise


def _load(path: Path, max_bytes: int, data: bytes | None, limits: ParseLimits) -> LoadedFile:
    suffix = path.suffix.lower()
    if data is None:
        data = _read_bytes(path, max_bytes, suffix, limits)
    elif not data:
        raise FileSkipped("empty file")
    loader = _LOADERS.get(suffix) or _LOADERS[_FALLBACK_SUFFIX]
    parsed = loader.parse(data, path.stem, limits)
    if isinstance(parsed, Faqs):
        entries = [FaqEntry(storable(e.question), storable(e.answer), [storable(t) for t in e.tags])
                   for e in parsed.entries]
        entries = [e for e in entries if e.question.strip() and e.answer.strip()]
        if not entries:
            raise FileSkipped("no valid FAQ entries (need question and answer)")
        return LoadedFile(path, storable(path.stem), "", entries, parsed.encoding)
    text = storable(parsed.text).strip()
    if not text:
        raise FileSkipped(loader.empty_reason)
    return LoadedFile(path, storable(parsed.title), text, [], parsed.encoding)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """Text Postgres and UTF-8 can hold: NUL (which a JSON "\\u0000" or a PDF's text layer can
    carry) dropped, lone surrogates ("\\ud800") replaced by U+FFFD."""
    return _UNSTORABLE.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", text)


def _read_bytes(path: Path, max_bytes: int, suffix: str, limits: ParseLimits) -> bytes:
    """Check existence, type, extension and size before reading a single byte."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise FileSkipped("file not found") from None
    except PermissionError:
        raise FileSkipped("unreadable: permission denied") from None
    except OSError as error:
        raise FileSkipped(f"unreadable: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise FileSkipped("not a regular file")
    if (unsupported := unsupported_reason(suffix, limits)) is not None:
        raise FileSkipped(unsupported)
    if info.st_size > max_bytes:
        raise FileSkipped(f"larger than the {format_size(max_bytes)} limit")
    if info.st_size == 0:
        raise FileSkipped("empty file")
    try:
        return path.read_bytes()
    except PermissionError:
        raise FileSkipped("unreadable: permission denied") from None
    except OSError as error:
        raise FileSkipped(f"unreadable: {error.strerror or error}") from None
