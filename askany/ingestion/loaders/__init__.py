"""Turn one file into text: the only place that knows about file formats.

Every loader returns Markdown-like text whose headings are ``#`` lines, so a single splitter
(``askany.ingestion.chunking``) handles structure for every format. FAQ files (.json, .jsonl,
.csv) are the exception: they become question/answer entries instead of text, because each
entry is already a self-contained chunk.

One module per format registers its parser with ``registry.register``; importing it below is
all it takes to support a new format. Unreadable or unindexable files raise ``FileSkipped``.
"""

from __future__ import annotations

# Format modules register themselves on import; the order does not matter.
from askany.ingestion.loaders import docx, faq, html, image, ocr, pdf, pptx, text, xlsx  # noqa: F401
from askany.ingestion.loaders.decoding import decode_text, normalize_newlines
from askany.ingestion.loaders.registry import FaqEntry, FileSkipped, LoadedFile, load_file, supported_suffixes

#: Every extension some loader handles (derived from the registry once all formats registered).
SUPPORTED_SUFFIXES = supported_suffixes()

__all__ = [
    "SUPPORTED_SUFFIXES",
    "FaqEntry",
    "FileSkipped",
    "LoadedFile",
    "decode_text",
    "load_file",
    "normalize_newlines",
]
