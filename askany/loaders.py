"""Turn one file into text: the only place that knows about file formats.

Every loader returns Markdown-like text whose headings are ``#`` lines, so a
single splitter (``askany.chunking``) handles structure for every format. FAQ
files (.json, .jsonl, .csv) are the exception: they become question/answer
entries instead of text, because each entry is already a self-contained chunk.

Anything a user should hear about ("this file was skipped, and why") is raised
as ``FileSkipped`` with a short human ``reason``; callers log it and move on.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import stat
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zipfile import BadZipFile

from askany.errors import AskAnyError

logger = logging.getLogger(__name__)

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".text"})
FAQ_SUFFIXES = frozenset({".json", ".jsonl", ".csv"})
SUPPORTED_SUFFIXES = frozenset(
    MARKDOWN_SUFFIXES | FAQ_SUFFIXES | {".pdf", ".docx", ".html", ".htm"}
)


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


# --------------------------------------------------------------------------- entry point


def load_file(path: Path, max_bytes: int, data: bytes | None = None) -> LoadedFile:
    """Read (unless its bytes are given) and parse ``path``; raise ``FileSkipped`` for anything that
    cannot be indexed."""
    path = Path(path)
    try:
        return _load(path, max_bytes, data)
    except FileSkipped as skipped:
        if skipped.path is None:
            raise FileSkipped(skipped.reason, path) from skipped
        raise


def _load(path: Path, max_bytes: int, data: bytes | None) -> LoadedFile:
    suffix = path.suffix.lower()
    if data is None:
        data = _read_bytes(path, max_bytes, suffix)
    elif not data:
        raise FileSkipped("empty file")
    if suffix in FAQ_SUFFIXES:
        text, encoding = decode_text(data)
        if not text.strip():
            raise FileSkipped("empty file")
        faqs = _FAQ_PARSERS[suffix](text)
        if not faqs:
            raise FileSkipped("no valid FAQ entries (need question and answer)")
        return LoadedFile(path, path.stem, "", faqs, encoding)
    encoding: str | None = None
    if suffix == ".pdf":
        title, text = _parse_pdf(data, path.stem)
    elif suffix == ".docx":
        title, text = _parse_docx(data, path.stem)
    elif suffix in (".html", ".htm"):
        title, text, encoding = _parse_html(data, path.stem)
    else:
        text, encoding = decode_text(data)
        title = _markdown_title(text) or path.stem
    text = text.strip()
    if not text:
        reason = "no extractable text (scanned or image-only PDF?)" if suffix == ".pdf" else "empty file"
        raise FileSkipped(reason)
    return LoadedFile(path, title, text, [], encoding)


def _read_bytes(path: Path, max_bytes: int, suffix: str) -> bytes:
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
    if suffix not in SUPPORTED_SUFFIXES:
        raise FileSkipped(f"unsupported extension {suffix or '(none)'}")
    if info.st_size > max_bytes:
        raise FileSkipped(f"larger than the {_format_size(max_bytes)} limit")
    if info.st_size == 0:
        raise FileSkipped("empty file")
    try:
        return path.read_bytes()
    except PermissionError:
        raise FileSkipped("unreadable: permission denied") from None
    except OSError as error:
        raise FileSkipped(f"unreadable: {error.strerror or error}") from None


def _format_size(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size}-byte"


# --------------------------------------------------------------------------- text decoding

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
# Most frequent characters of modern written Chinese (the top of jieba's
# dictionary by word frequency) and their traditional forms, plus a few words
# common in technical documents. Real text is dense in these; text decoded with
# the wrong codec is a near-uniform scatter over thousands of characters.
_COMMON_SIMPLIFIED = (
    "一是人了不在有大中国和为这上他个地年来我会以到时要出的生学说道民家子也成行下们于后就发自之对得主长可过"
    "天作分方用多你着部能市等业全里工公经本都而高政法面门动日进区事代那去心小同北定开产前其军还然起种所如现理"
    "机体表力好外与文当两实重新三么只山水关明从化平建又制南内西没此将员名手最东头者月间无安看见各城十相但已些"
    "正口通想度加第她合院物性战由位常点海意场使次二向治因立数样身情入原问把路被并利老教万知级量任及应资务元美"
    "特期世回系比气总展电科先声提品设或义社很统处四首共形己儿司目基领直计别权话少流命至报给打变果书清活几华解"
    "议更称程今决张导术才保交放管结便走达反再题色五接条规式它改光运信受什组听布百指论强做取技选记真却职号件类"
    "何带据集联完质难增历专每即步认车必言收考求近备具众连调感转请谢网络软件数据信息页码账户设置用户系统文件"
)
_COMMON_TRADITIONAL = (
    "國為這個來會時學說們於後發對長過著業裡裏門動進區開產軍還種現機體與當兩實麼關從沒將員東頭間無見戰點場數樣"
    "問並萬級應資務係氣總電聲設義統處兒領計別權話報給變書幾華議稱決張導術結達題條規運組聽論選記職號類帶據聯質"
    "難歷專認車眾連調轉請謝網絡軟體資料訊息頁碼帳戶設定使用者檔案臺灣"
)
_COMMON_CHARS = frozenset(_COMMON_SIMPLIFIED + _COMMON_TRADITIONAL)
# Scripts that show up when Chinese bytes are decoded with the wrong codec.
_SUSPICIOUS_RANGES = (
    (0x0370, 0x04FF),  # Greek, Cyrillic
    (0x2500, 0x259F),  # box drawing, blocks
    (0x3040, 0x30FF),  # kana
    (0x3400, 0x4DBF),  # CJK extension A (rare characters)
    (0xE000, 0xF8FF),  # private use area
    (0xF900, 0xFAFF),  # compatibility ideographs
)
# Level-1 ("frequently used") ideograph byte ranges of each codec.
_LEVEL_ONE = {"gb18030": (0xB0A1, 0xD7FE), "big5": (0xA440, 0xC67E), "cp950": (0xA440, 0xC67E)}
_PLAUSIBILITY_SAMPLE = 20_000
_CONTROL_CHARS = re.compile(r"[\x01-\x08\x0b\x0e-\x1f\x7f]")


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes of a text file; return the text (BOM stripped, ``\\n`` newlines) and codec name.

    Order: BOM, UTF-8, then GB18030 vs Big5 by strict decoding plus a plausibility
    score (detectors confuse the two on short Chinese text), then charset-normalizer
    for anything else. Traditional characters are kept as written.
    """
    text, encoding = _decode(data)
    if text.startswith("\ufeff"):
        text = text[1:]
    sample = text[:_PLAUSIBILITY_SAMPLE]
    if len(_CONTROL_CHARS.findall(sample)) > max(2, len(sample) // 100):
        raise FileSkipped("binary file")
    return normalize_newlines(text), encoding


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode(data: bytes) -> tuple[str, str]:
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec), codec
            except UnicodeDecodeError:
                raise FileSkipped(f"not valid {codec.upper()} text despite its byte-order mark") from None
    if b"\x00" in data:
        raise FileSkipped("binary file")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    candidates = _chinese_candidates(data)
    if candidates and candidates[0][0] > 0:
        _, text, codec = candidates[0]
        return text, codec
    detected = _charset_normalizer_guess(data)
    if detected is not None:
        return detected
    if candidates:
        _, text, codec = candidates[0]
        return text, codec
    raise FileSkipped("not valid UTF-8/GB18030/Big5 text")


def _chinese_candidates(data: bytes) -> list[tuple[float, str, str]]:
    """Strict GB18030/Big5/CP950 decodes, best plausibility first (ties keep GB18030, listed first)."""
    scored = []
    for order, codec in enumerate(("gb18030", "big5", "cp950")):
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        scored.append((_plausibility(text, codec), -order, text, codec))
    scored.sort(reverse=True)
    return [(score, text, codec) for score, _, text, codec in scored]


def _plausibility(text: str, codec: str) -> float:
    """Reward frequent and level-1 ideographs, punish scripts typical of mis-decoding."""
    low, high = _LEVEL_ONE[codec]
    score = 0.0
    for char in text[:_PLAUSIBILITY_SAMPLE]:
        code = ord(char)
        if code < 0x80:
            continue
        if char in _COMMON_CHARS:
            score += 3
        elif 0x4E00 <= code <= 0x9FFF:
            encoded = char.encode(codec, errors="ignore")
            if len(encoded) == 2 and low <= int.from_bytes(encoded, "big") <= high:
                score += 1
        elif any(start <= code <= end for start, end in _SUSPICIOUS_RANGES):
            score -= 3
    return score


def _charset_normalizer_guess(data: bytes) -> tuple[str, str] | None:
    """Last resort for non-Chinese legacy encodings (Latin-1, Shift-JIS, ...)."""
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        return None
    return str(best), best.encoding


# --------------------------------------------------------------------------- Markdown / text

_ATX_TITLE = re.compile(r"^ {0,3}#[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def _markdown_title(text: str) -> str | None:
    """The first level-1 heading outside code fences."""
    in_fence = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (match := _ATX_TITLE.match(line)):
            return match.group(1).strip()
    return None


# --------------------------------------------------------------------------- PDF

_CJK_CHAR = r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]"
_CJK_END = re.compile(_CJK_CHAR + r"$")
_CJK_START = re.compile(r"^" + _CJK_CHAR)
_CJK_SENTENCE_END = re.compile(r"[。！？；：]$")


def _parse_pdf(data: bytes, stem: str) -> tuple[str, str]:
    """Text of every page, pages separated by blank lines; title from metadata or first line."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        _unlock(reader)
        pages = list(reader.pages)
    except FileSkipped:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as error:
        raise FileSkipped(f"corrupt PDF: {_short(error)}") from None
    texts = [_join_wrapped_lines(text) for text in _page_texts(pages)]
    text = "\n\n".join(t for t in texts if t.strip())
    return _pdf_title(reader) or _first_line(text) or stem, text


def _unlock(reader: Any) -> None:
    """Open PDFs encrypted with an empty user password (viewable by anyone); refuse the rest."""
    if not reader.is_encrypted:
        return
    try:
        unlocked = reader.decrypt("")
    except Exception as error:  # pypdf raises DependencyError, NotImplementedError, ...
        raise FileSkipped(f"encrypted PDF ({_short(error)})") from None
    if not unlocked:
        raise FileSkipped("encrypted PDF (password required)")


def _page_texts(pages: Iterable[Any]) -> Iterator[str]:
    for number, page in enumerate(pages, start=1):
        try:
            yield normalize_newlines(page.extract_text() or "")
        except Exception as error:  # one broken page should not lose the rest
            logger.warning("PDF page %d: text extraction failed (%s); page skipped", number, _short(error))


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


# --------------------------------------------------------------------------- DOCX

_HEADING_STYLE = re.compile(r"^(?:heading|标题|標題)\s*(\d)$", re.IGNORECASE)


def _parse_docx(data: bytes, stem: str) -> tuple[str, str]:
    """Paragraphs and tables in document order; heading styles become ``#`` lines."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from lxml.etree import XMLSyntaxError

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = list(_docx_blocks(document))
        core_title = (document.core_properties.title or "").strip()
    except (PackageNotFoundError, BadZipFile, XMLSyntaxError, KeyError, ValueError, OSError) as error:
        raise FileSkipped(f"corrupt DOCX: {_short(error)}") from None
    headings = (b.lstrip("# ") for b in blocks if b.startswith("#"))
    title = core_title or next(headings, None) or stem
    return title, "\n\n".join(blocks)


def _docx_blocks(document: Any) -> Iterator[str]:
    from docx.table import Table

    for item in document.iter_inner_content():
        if isinstance(item, Table):
            rows = _docx_table_rows(item)
            if rows:
                yield "\n".join(rows)
            continue
        text = _collapse_spaces(item.text)
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
            cells.append(_collapse_spaces(cell.text))
        if any(cells):
            rows.append(" | ".join(cells))
    return rows


# --------------------------------------------------------------------------- HTML

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^<\?xml[^>]+encoding\s*=\s*["']([\w-]+)""")
_CODEC_ALIASES = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "big5": "cp950"}
_DROPPED_TAGS = ("script", "style", "nav", "noscript", "template", "svg", "iframe", "head")
_HEADING_TAGS = {f"h{n}": n for n in range(1, 7)}
_LINE_TAGS = frozenset({"li", "tr", "dt", "dd"})
_BLOCK_TAGS = frozenset(
    "p div section article main header footer aside blockquote ul ol dl table thead tbody tfoot "
    "figure figcaption form fieldset details summary address caption hr center body html".split()
) | _LINE_TAGS


def _parse_html(data: bytes, stem: str) -> tuple[str, str, str]:
    from bs4 import BeautifulSoup

    markup, encoding = _decode_html(data)
    soup = BeautifulSoup(markup, _html_parser())
    title_tag = soup.find("title")
    page_title = _collapse_spaces(title_tag.get_text(" ")) if title_tag else ""
    for tag in soup.find_all(_DROPPED_TAGS):
        tag.decompose()
    writer = _HtmlWriter()
    writer.walk(soup)
    first_h1 = soup.find("h1")
    title = page_title or (_collapse_spaces(first_h1.get_text(" ")) if first_h1 else "") or stem
    return title, writer.text(), encoding


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
            text = _collapse_spaces(tag.get_text(" "))
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
            cells = [_collapse_spaces(cell.get_text(" ")) for cell in tag.find_all(["td", "th"])]
            if any(cells):
                self.blocks.append((" | ".join(cells), True))
        elif name in _BLOCK_TAGS:
            self.flush()
            self.walk(tag)
            self.flush(line_item=name in _LINE_TAGS)
        else:
            self.walk(tag)

    def flush(self, line_item: bool = False) -> None:
        lines = (_collapse_spaces("".join(run)) for run in _split_on(self.inline, _BREAK))
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


_WHITESPACE_RUN = re.compile(r"\s+")
_NEWLINE_BETWEEN_CJK = re.compile(rf"(?<={_CJK_CHAR})[ \t]*\n\s*(?={_CJK_CHAR})")


def _collapse_spaces(text: str) -> str:
    """Collapse whitespace like a browser, except source line breaks between Chinese characters vanish."""
    text = _NEWLINE_BETWEEN_CJK.sub("", text.replace("\xa0", " "))
    return _WHITESPACE_RUN.sub(" ", text).strip()


# --------------------------------------------------------------------------- FAQ

_FIELD_NAMES = {
    "question": ("question", "q", "问题", "問題"),
    "answer": ("answer", "a", "答案", "回答", "答"),
    "tags": ("tags", "tag", "标签", "標籤"),
}
_TAG_SEPARATORS = re.compile(r"[,;，；、]")


def _parse_faq_json(text: str) -> list[FaqEntry]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise FileSkipped(f"invalid JSON: line {error.lineno}: {error.msg}") from None
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


_FAQ_PARSERS: dict[str, Callable[[str], list[FaqEntry]]] = {
    ".json": _parse_faq_json,
    ".jsonl": _parse_faq_jsonl,
    ".csv": _parse_faq_csv,
}


# --------------------------------------------------------------------------- helpers


def _first_line(text: str, limit: int = 100) -> str | None:
    line = next((line.strip() for line in text.split("\n") if line.strip()), "")
    return line[:limit] or None


def _short(error: BaseException, limit: int = 120) -> str:
    message = str(error).strip() or type(error).__name__
    return message if len(message) <= limit else message[: limit - 1] + "…"
