"""PDF files: the text layer of every page, with Chinese lines re-joined where the PDF wrapped them;
pages without a usable text layer (scans, or a layer of unmapped glyphs) are rendered and read by OCR.

The page count is checked (MAX_PDF_PAGES) before any text is extracted: first the count the page
tree declares, which costs nothing, then the pages pypdf actually finds, in case it lied. pypdf
itself bounds what a stream may decompress to and how deep and large the page tree may be. The
pages to OCR are counted (OCR_MAX_PAGES) before the first is rendered; pypdfium2 (PDFium,
BSD-3/Apache-2.0) renders them one at a time at 150 dpi, fewer if the page would exceed
MAX_IMAGE_MEGAPIXELS, and a blank render is not sent to OCR. Each page's text follows a page
line (``chunking.location_line``), so every chunk knows its page.
"""

from __future__ import annotations

import io
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from askany.core.text import CJK_TEXT
from askany.ingestion.chunking import location_line
from askany.ingestion.loaders.common import short_error
from askany.ingestion.loaders.decoding import normalize_newlines
from askany.ingestion.loaders.limits import ParseLimits, over_limit
from askany.ingestion.loaders.ocr import INSTALL_HINT, ocr_installed
from askany.ingestion.loaders.registry import Document, FileSkipped, register

if TYPE_CHECKING:
    from PIL.Image import Image

logger = logging.getLogger(__name__)

_CJK_END = re.compile(f"[{CJK_TEXT}]$")
_CJK_START = re.compile(f"^[{CJK_TEXT}]")
_CJK_SENTENCE_END = re.compile(r"[。！？；：]$")
_EMPTY_REASON = "no extractable text (scanned or image-only PDF?)"
OCR_DPI = 150
# A text layer with fewer visible characters than this may be a scan's stamped page number: the
# page is read by OCR too, and OCR's text is kept if it is longer.
_MIN_LAYER_CHARACTERS = 10
# Characters of a layer whose font has no Unicode mapping: private use, U+FFFD, controls.
_GARBAGE = re.compile(r"[\ue000-\uf8ff\ufffd\x00-\x08\x0b-\x1f\x7f]|\(cid:\d+\)")
_PDFIUM = threading.Lock()  # PDFium is not thread-safe


@register(".pdf", empty_reason=_EMPTY_REASON, uses_ocr=True)
def parse_pdf(data: bytes, stem: str, limits: ParseLimits) -> Document:
    """Text of every page (OCR where it has no text layer), each after its page line; title from
    metadata or the first line."""
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
    texts = {number: _join_wrapped_lines(text) for number, text in _page_texts(pages)}
    scanned = [number for number, text in texts.items() if not usable_text_layer(text)]
    can_ocr = limits.ocr and _renderer_installed()
    if scanned and can_ocr:
        if len(scanned) > limits.ocr_max_pages:
            raise over_limit(f"PDF has {len(scanned):,} pages without a text layer to OCR",
                             f"{limits.ocr_max_pages:,}", "OCR_MAX_PAGES")
        for number, text in _ocr_pages(data, scanned, stem, limits):
            if _visible(text) > (_visible(texts[number]) if usable_text_layer(texts[number], short=True) else 0):
                texts[number] = text
    elif scanned:
        logger.info("PDF %s: %d pages without a text layer not read (%s)", stem, len(scanned), _no_ocr_hint(limits))
    kept = [(number, text) for number, text in texts.items() if text.strip()]
    if not kept:
        raise FileSkipped(f"{_EMPTY_REASON}: {_no_ocr_hint(limits)}" if scanned and not can_ocr else _EMPTY_REASON)
    body = "\n\n".join(f"{location_line('page', number)}\n{text}" for number, text in kept)
    return Document(_pdf_title(reader) or _first_line(kept[0][1]) or stem, body)


def usable_text_layer(text: str, short: bool = False) -> bool:
    """Whether a page's text layer can stand without OCR: enough visible characters (any, if
    ``short``), and few of them garbage (unmapped glyphs)."""
    visible = _visible(text)
    if visible < (1 if short else _MIN_LAYER_CHARACTERS):
        return False
    garbage = sum(len(match.group()) for match in _GARBAGE.finditer(text))
    return garbage <= 0.3 * visible


def _visible(text: str) -> int:
    return sum(1 for character in text if not character.isspace())


def _renderer_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("pypdfium2") is not None


def _no_ocr_hint(limits: ParseLimits) -> str:
    if not ocr_installed():
        return f"OCR needs rapidocr and onnxruntime ({INSTALL_HINT})"
    if not limits.ocr:
        return "OCR is off (OCR_ENABLED=false)"
    return "rendering pages for OCR needs pypdfium2 (pip install pypdfium2)"


def _ocr_pages(data: bytes, numbers: list[int], stem: str, limits: ParseLimits) -> Iterator[tuple[int, str]]:
    """OCR text of the given pages, rendered one at a time (blank renders are not read)."""
    import pypdfium2 as pdfium

    from askany.ingestion.loaders.image import to_rgb
    from askany.ingestion.loaders.ocr import read_pages

    try:
        with _PDFIUM:
            document = pdfium.PdfDocument(data)
            count = len(document)
    except (pdfium.PdfiumError, ValueError, OSError) as error:
        raise FileSkipped(f"corrupt PDF: cannot render it for OCR ({short_error(error)})") from None

    def page(number: int) -> Callable[[], Image | None]:
        def render() -> Image | None:
            with _PDFIUM:
                try:
                    handle = document[number - 1]
                    width, height = handle.get_size()
                    scale = OCR_DPI / 72
                    if width * height * scale * scale > limits.max_image_pixels:  # an oversized page, drawn smaller
                        scale = math.sqrt(limits.max_image_pixels / max(width * height, 1.0))
                    image = handle.render(scale=scale).to_pil()
                    handle.close()
                except (pdfium.PdfiumError, ValueError, OSError) as error:
                    logger.warning("PDF %s page %d: cannot be rendered for OCR (%s)", stem, number,
                                   short_error(error))
                    return None
            low, high = image.convert("L").getextrema()
            return to_rgb(image) if high - low > 16 else None  # a blank page holds no text
        return render

    try:
        yield from read_pages([(number, page(number)) for number in numbers if number <= count], stem)
    finally:
        with _PDFIUM:
            document.close()


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


def _page_texts(pages: Iterable[Any]) -> Iterator[tuple[int, str]]:
    for number, page in enumerate(pages, start=1):
        try:
            yield number, normalize_newlines(page.extract_text() or "")
        except Exception as error:  # one broken page should not lose the rest
            logger.warning("PDF page %d: text extraction failed (%s); page read as without text", number,
                           short_error(error))
            yield number, ""


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
