"""Chinese-aware splitting of Markdown-like text into chunks sized in model tokens.

Structure is respected from the outside in: Markdown headings (a chunk never
spans two sections), then paragraphs (blank lines; fenced code blocks are one
paragraph), then sentences. A sentence ends at 。！？；… or at ASCII ! ? ; .
when followed by whitespace, a CJK character or the end (so ``v2.3.1``,
``ERR-2041`` and URLs stay whole), and keeps its closing quotes/brackets.

Only ATX headings (``#`` .. ``######``) count; the loaders emit those for
every format. A location line (``location_line("page", 3)``: U+FDD0, a
Unicode noncharacter reserved for internal use, then the kind and the
number; emitted by the PDF, image and PowerPoint loaders)
starts a new page or slide: a chunk never spans two of them, keeps the
heading path it is under, and carries its location (``Chunk.location``),
which the pipeline stores as chunk metadata (``{"page": 3}``). Each chunk under a heading starts with its heading path on one
line, e.g. ``安装指南 > 环境要求\n``, so a chunk read alone (by the reranker,
the model, a person checking a citation) still says what it is about. The
prefix counts towards ``chunk_size`` (a path longer than half a chunk is
shortened to its last heading): no chunk exceeds ``chunk_size`` tokens as
measured by ``count_tokens`` on the whole chunk text, unless one character
alone exceeds the limit.

Cost: every sentence is counted once; each finished chunk is counted once
more to check it (tokenizers are not exactly additive: joining two strings
can change the count). Sentences longer than the budget are cut at line
breaks, then clause punctuation (，、：, :), then spaces, and only then
by binary search on character positions, avoiding cuts inside ASCII words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from askany.core.text import CJK_WIDE, estimate_tokens

__all__ = ["Chunk", "char_count_tokens", "location_line", "split_document"]

TokenCounter = Callable[[str], int]
HEADING_SEPARATOR = " > "


@dataclass
class Chunk:
    text: str
    heading_path: tuple[str, ...]
    position: int
    location: tuple[str, int] | None = None  # ("page", 3), ("slide", 2): where in the file it is


# --------------------------------------------------------------------------- token estimate

#: Cheap token estimate when no tokenizer is loaded (askany.core.text.estimate_tokens).
char_count_tokens = estimate_tokens


# --------------------------------------------------------------------------- document structure

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
LOCATION_MARK = "\ufdd0"  # a noncharacter: never part of interchanged text, and not whitespace
_LOCATION = re.compile(f"^{LOCATION_MARK}([a-z]+) ([0-9]{{1,9}})$")


def location_line(kind: str, number: int) -> str:
    """The line a loader puts before the text of page or slide ``number`` (``kind`` "page", "slide")."""
    return f"{LOCATION_MARK}{kind} {number}"


@dataclass
class _Paragraph:
    text: str
    is_code: bool


@dataclass
class _Section:
    path: tuple[str, ...]
    paragraphs: list[_Paragraph]
    location: tuple[str, int] | None = None


def _sections(text: str) -> Iterator[_Section]:
    """Group lines into sections by ATX headings and location lines, and sections into paragraphs;
    fences are opaque (a location line inside one still counts: the page ends there)."""
    stack: list[tuple[int, str]] = []
    paragraphs: list[_Paragraph] = []
    lines: list[str] = []
    fence: str | None = None
    location: tuple[str, int] | None = None

    def flush(is_code: bool = False) -> None:
        body = "\n".join(lines).strip("\n")
        if body.strip():
            paragraphs.append(_Paragraph(body, is_code))
        lines.clear()

    for line in text.split("\n"):
        line = line.rstrip()
        if match := _LOCATION.match(line):
            flush(is_code=fence is not None)
            if paragraphs:
                yield _Section(tuple(title for _, title in stack), paragraphs, location)
                paragraphs = []
            location = (match.group(1), int(match.group(2)))
        elif fence is not None:
            lines.append(line)
            if line.lstrip().startswith(fence) and not line.strip().strip(fence[0]):
                flush(is_code=True)
                fence = None
        elif match := _FENCE.match(line):
            flush()
            fence = match.group(1)
            lines.append(line)
        elif match := _HEADING.match(line):
            flush()
            if paragraphs:
                yield _Section(tuple(title for _, title in stack), paragraphs, location)
                paragraphs = []
            _push_heading(stack, len(match.group(1)), match.group(2).strip())
        elif not line.strip():
            flush()
        else:
            lines.append(line)
    flush(is_code=fence is not None)
    if paragraphs:
        yield _Section(tuple(title for _, title in stack), paragraphs, location)


def _push_heading(stack: list[tuple[int, str]], level: int, title: str) -> None:
    while stack and stack[-1][0] >= level:
        stack.pop()
    if title:
        stack.append((level, title))


# --------------------------------------------------------------------------- sentences

_CLOSERS = "”’」』）)\\]】》\"'"
_SENTENCE_END = re.compile(
    rf"(?:[。！？；…]+|[.!?;]+(?=[{_CLOSERS}]*(?:\s|$|[{CJK_WIDE}])))[{_CLOSERS}]*"
)
# "1. ", "a. ", "iv. " at the start of a line are list markers, not sentence ends.
_LIST_MARKER = re.compile(r"(?:^|\n)[ \t]*(?:\d{1,3}|[A-Za-z]|[ivxlcIVXLC]{1,5})$")


@dataclass
class _Unit:
    """A sentence (or a piece of an over-long one) with the separator that precedes it."""

    text: str
    tokens: int
    sep: str


def _split_sentences(paragraph: str) -> Iterator[tuple[str, str]]:
    """(separator, sentence) pairs; separators are "", " " or "\\n" as found in the text."""
    start = 0
    for match in _SENTENCE_END.finditer(paragraph):
        if match.group().startswith(".") and _LIST_MARKER.search(paragraph, start, match.start()):
            continue
        yield from _with_separator(paragraph[start : match.end()])
        start = match.end()
    yield from _with_separator(paragraph[start:])


def _with_separator(piece: str) -> Iterator[tuple[str, str]]:
    text = piece.strip()
    if text:
        leading = piece[: len(piece) - len(piece.lstrip())]
        yield ("\n" if "\n" in leading else " " if leading else ""), text


# --------------------------------------------------------------------------- splitter


class _Splitter:
    """Holds the counter and limits so the small steps below need few arguments."""

    def __init__(self, count_tokens: TokenCounter, chunk_size: int, chunk_overlap: int):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        if not 0 <= chunk_overlap < chunk_size:
            raise ValueError(f"chunk_overlap must be in [0, chunk_size), got {chunk_overlap}")
        self.count_tokens = count_tokens
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        # Tokens every encoded text carries (e.g. [CLS]/[SEP]): paid once per chunk, not per sentence.
        self.base = max(0, count_tokens(""))

    def cost(self, text: str) -> int:
        return max(0, self.count_tokens(text) - self.base) if text else 0

    # ---- one section

    def section_chunks(self, section: _Section) -> Iterator[str]:
        prefix = self.prefix(section.path)
        budget = max(1, self.chunk_size - self.base - self.cost(prefix))
        units = [piece for unit in self.units(section) for piece in self.fit(unit, budget)]
        yield from self.pack(units, prefix, budget)

    def prefix(self, path: tuple[str, ...]) -> str:
        """Heading path line; shortened so that it never takes more than half of a chunk."""
        if not path:
            return ""
        limit = self.chunk_size // 2
        for candidate in (HEADING_SEPARATOR.join(path), path[-1]):
            if self.cost(candidate) <= limit:
                return candidate + "\n"
        if limit < 1:
            return ""
        return self.hard_cut(path[-1], limit)[0].text + "\n"

    def units(self, section: _Section) -> Iterator[_Unit]:
        for paragraph in section.paragraphs:
            if paragraph.is_code:
                pieces: Iterator[tuple[str, str]] = iter([("", paragraph.text)])
            else:
                pieces = _split_sentences(paragraph.text)
            for index, (sep, text) in enumerate(pieces):
                yield _Unit(text, self.cost(text), "\n\n" if index == 0 else sep)

    # ---- over-long sentences

    def fit(self, unit: _Unit, budget: int, level: int = 0) -> list[_Unit]:
        """Cut a unit above the budget at ever finer boundaries; the first piece keeps its separator."""
        if unit.tokens <= budget:
            return [unit]
        if level == len(_FINER_SPLITS):
            pieces = self.hard_cut(unit.text, budget)
        else:
            parts = list(_FINER_SPLITS[level](unit.text))
            if len(parts) <= 1:
                return self.fit(unit, budget, level + 1)
            pieces = []
            for sep, text in parts:
                pieces.extend(self.fit(_Unit(text, self.cost(text), sep), budget, level + 1))
        pieces[0] = _Unit(pieces[0].text, pieces[0].tokens, unit.sep)
        return pieces

    def hard_cut(self, text: str, budget: int) -> list[_Unit]:
        """Longest prefixes within the budget, by binary search; cuts avoid the inside of ASCII words."""
        pieces: list[_Unit] = []
        sep = ""
        while text:
            tokens = self.cost(text)
            if tokens <= budget:
                pieces.append(_Unit(text, tokens, sep))
                break
            cut = _avoid_word_split(text, self.longest_prefix(text, budget))
            head, rest = text[:cut].rstrip() or text[:cut], text[cut:].lstrip()
            pieces.append(_Unit(head, self.cost(head), sep))
            gap = text[len(head) : len(text) - len(rest)]
            sep = "\n" if "\n" in gap else " " if gap else ""
            text = rest
        return pieces

    def longest_prefix(self, text: str, budget: int) -> int:
        """Largest p with cost(text[:p]) <= budget (at least 1): gallop, then bisect."""
        low, high = 1, min(len(text), 4 * budget + 1)
        while high < len(text) and self.cost(text[:high]) <= budget:
            low, high = high, min(len(text), high * 2)
        while low < high:
            middle = (low + high + 1) // 2
            if self.cost(text[:middle]) <= budget:
                low = middle
            else:
                high = middle - 1
        return low

    # ---- packing

    def pack(self, units: list[_Unit], prefix: str, budget: int) -> Iterator[str]:
        """Greedy packing; each chunk after the first repeats trailing sentences of the previous one."""
        start = fresh = 0  # units[start:fresh] are overlap, units[fresh:] are not yet emitted
        while fresh < len(units):
            end, total = start, 0
            while end < len(units) and total + units[end].tokens <= budget:
                total += units[end].tokens
                end += 1
            text, start, end = self.verified(units, start, max(end, fresh + 1), fresh, prefix, budget)
            yield text
            fresh = end
            start = self.overlap_start(units, start, end, budget)

    def verified(
        self, units: list[_Unit], start: int, end: int, fresh: int, prefix: str, budget: int
    ) -> tuple[str, int, int]:
        """Count the real chunk once; if joining pushed it over, drop overlap, then trailing units."""
        while True:
            text = prefix + _render(units[start:end])
            excess = self.count_tokens(text) - self.chunk_size
            if excess <= 0:
                return text, start, end
            if start < fresh:
                start += 1
            elif end - start > 1:
                end -= 1
            else:
                unit = units[start]
                pieces = self.hard_cut(unit.text, max(1, min(budget, unit.tokens) - excess))
                if len(pieces) == 1:
                    return text, start, end  # a single character over the limit: nothing smaller exists
                pieces[0] = _Unit(pieces[0].text, pieces[0].tokens, unit.sep)
                units[start : start + 1] = pieces

    def overlap_start(self, units: list[_Unit], start: int, end: int, budget: int) -> int:
        """First unit of the next chunk: trailing whole units within chunk_overlap that leave room."""
        if end >= len(units):
            return end
        first, tokens = end, 0
        while first - 1 > start and tokens + units[first - 1].tokens <= self.chunk_overlap:
            first -= 1
            tokens += units[first].tokens
        while first < end and tokens + units[end].tokens > budget:
            tokens -= units[first].tokens
            first += 1
        return first


def _render(units: list[_Unit]) -> str:
    return "".join((unit.sep if index else "") + unit.text for index, unit in enumerate(units))


_WORD_CHAR = re.compile(r"[A-Za-z0-9_.\-/]")


def _avoid_word_split(text: str, cut: int) -> int:
    """Move a cut back to the start of an ASCII word (``ERR-2041``, ``v2.3.1``) if it falls inside one."""
    if cut >= len(text) or not (_WORD_CHAR.match(text[cut - 1]) and _WORD_CHAR.match(text[cut])):
        return cut
    start = cut
    while start > 0 and _WORD_CHAR.match(text[start - 1]):
        start -= 1
    return start if start > 0 else cut


def _split_after(pattern: re.Pattern[str]) -> Callable[[str], Iterator[tuple[str, str]]]:
    def split(text: str) -> Iterator[tuple[str, str]]:
        start = 0
        for match in pattern.finditer(text):
            yield from _with_separator(text[start : match.end()])
            start = match.end()
        yield from _with_separator(text[start:])

    return split


# Zero-width splits before line breaks and spaces keep them as the next piece's separator.
_FINER_SPLITS = (
    _split_after(re.compile(r"(?=\n)")),
    _split_after(re.compile(r"[，、：]|[,:](?=\s)")),
    _split_after(re.compile(r"(?<=\S)(?=\s)")),
)


# --------------------------------------------------------------------------- public entry


def split_document(
    text: str, count_tokens: TokenCounter, chunk_size: int, chunk_overlap: int
) -> list[Chunk]:
    """Split Markdown-like text into chunks of at most ``chunk_size`` tokens, heading path included.

    ``count_tokens`` should be the embedding model's tokenizer (``char_count_tokens``
    is a rough fallback). ``chunk_overlap`` tokens of whole trailing sentences are
    repeated at the start of the next chunk of the same section.
    """
    splitter = _Splitter(count_tokens, chunk_size, chunk_overlap)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    chunks: list[Chunk] = []
    for section in _sections(text):
        for chunk_text in splitter.section_chunks(section):
            chunks.append(Chunk(chunk_text, section.path, len(chunks), section.location))
    return chunks
