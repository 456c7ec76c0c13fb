"""How much one file may cost to parse, checked before and while parsing, never after.

A small file can hold a great deal of work: a 1 MB DOCX can unpack to 1 GB, a 333 KB one to 2.6
million paragraphs, a PDF can declare a million pages. ``ParseLimits`` carries the bounds (from
the settings of the same names) and ``WorkBudget`` counts elements as a parser meets them, so a
hostile file is refused in seconds with a reason that names the setting to raise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from askany.ingestion.loaders.registry import FileSkipped

if TYPE_CHECKING:
    from askany.core.config import Settings

MB = 1024 * 1024
# Small members can be very repetitive and harmless (an empty 3,000-row table compresses 134:1 at
# 1.3 MB); the ratio only matters where the unpacked size does.
RATIO_CHECKED_FROM = 10 * MB


@dataclass(frozen=True)
class ParseLimits:
    max_unpacked_bytes: int  # MAX_UNPACKED_MB: all members of a zip-based file, as declared and as read
    max_compression_ratio: float  # MAX_COMPRESSION_RATIO: members unpacking to more than RATIO_CHECKED_FROM
    max_archive_members: int  # MAX_ARCHIVE_MEMBERS
    max_xml_elements: int  # MAX_XML_ELEMENTS: over all the XML parts of one file
    max_html_elements: int  # MAX_HTML_ELEMENTS: tags of one HTML page
    max_pdf_pages: int  # MAX_PDF_PAGES
    ocr: bool = False  # OCR_ENABLED, and the OCR engine installed
    ocr_max_pages: int = 100  # OCR_MAX_PAGES: pages (image frames, scanned PDF pages) OCR'd in one file
    max_image_pixels: int = 60_000_000  # MAX_IMAGE_MEGAPIXELS: one image, or one rendered page

    @classmethod
    def from_settings(cls, settings: Settings) -> ParseLimits:
        from askany.ingestion.loaders.ocr import ocr_installed

        return cls(
            max_unpacked_bytes=int(settings.max_unpacked_mb * MB),
            max_compression_ratio=settings.max_compression_ratio,
            max_archive_members=settings.max_archive_members,
            max_xml_elements=settings.max_xml_elements,
            max_html_elements=settings.max_html_elements,
            max_pdf_pages=settings.max_pdf_pages,
            ocr=settings.ocr_enabled and ocr_installed(),
            ocr_max_pages=settings.ocr_max_pages,
            max_image_pixels=int(settings.max_image_megapixels * 1_000_000),
        )


def over_limit(what: str, limit: str, setting: str) -> FileSkipped:
    """The one wording of every refusal: what the file holds, the bound, and the setting to raise."""
    return FileSkipped(f"{what} (limit {limit}: raise {setting} to allow it)")


class WorkBudget:
    """Elements one file may cost over all its parts; a part read twice (counted, then parsed) is
    charged once, for the most of it any reading has seen."""

    def __init__(self, kind: str, limit: int, unit: str, setting: str):
        self.kind = kind
        self.limit = limit
        self.unit = unit
        self.setting = setting
        self._seen: dict[str, int] = {}
        self._spent = 0

    def reach(self, part: str, count: int) -> None:
        """``part`` holds at least ``count`` elements; refuse the file once all parts hold too many."""
        seen = self._seen.get(part, 0)
        if count <= seen:
            return
        self._seen[part] = count
        self._spent += count - seen
        if self._spent > self.limit:
            raise self.refusal()

    def refusal(self) -> FileSkipped:
        return over_limit(f"{self.kind} has more than {self.limit:,} {self.unit}", f"{self.limit:,}", self.setting)
