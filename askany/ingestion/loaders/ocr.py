"""Offline OCR: page images to text in reading order, for images and PDF pages without a text layer.

The engine is RapidOCR (PyPI ``rapidocr``, Apache-2.0) on onnxruntime with the PP-OCRv6 small
detection and recognition models (Apache-2.0, PaddleOCR) that ship inside its wheel; their
paths are passed explicitly, so RapidOCR's download code is never reached (see docs/formats.md).
It is created once per process, on the first page that needs it (importing it costs a second
and loads OpenCV and onnxruntime, which a run without images never pays), and used under a
lock, since RapidOCR keeps per-call state on the engine.

``layout`` turns the engine's boxes into text: boxes are grouped into lines by vertical
overlap, lines read top to bottom and each left to right, and lines into paragraphs at a
larger gap, an indented first line or a short last line. Two-column pages are read row by row.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import logging
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from askany.core.text import CJK_TEXT
from askany.ingestion.loaders.common import short_error
from askany.ingestion.loaders.registry import FileSkipped, importable

if TYPE_CHECKING:
    from PIL.Image import Image

logger = logging.getLogger(__name__)

#: The modules OCR needs (the PyPI packages ``rapidocr`` and ``onnxruntime``).
OCR_MODULES = ("rapidocr", "onnxruntime")
INSTALL_HINT = "pip install rapidocr onnxruntime"
# The models inside the rapidocr wheel (rapidocr/models/), by task.
_MODEL_FILES = {"Det": "PP-OCRv6_det_small.onnx", "Rec": "PP-OCRv6_rec_small.onnx",
                "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx"}
# Measured on an A4 page at 150 dpi (bench/README.md): 5.2 s with RapidOCR's defaults, 2.9 s
# without the text-line angle classifier (for upside-down lines); detection at full size (1240 x
# 1754) took 1.8 s of that, 0.5 s at 960 pixels. 1,536 keeps a 1920-pixel screenshot's small text
# at 80 % of its size; the character error rate stayed at 0.13 % over the eval set.
_TUNING = {"Global.use_cls": False, "Det.limit_type": "max", "Det.limit_side_len": 1536}
# Pages taller than this many times their width are read in overlapping tiles: the engine scales
# a page down to 2,000 pixels on its long side, which would make a long screenshot unreadable.
_TILE_RATIO = 2.5
_TILE_OVERLAP = 160  # pixels; a text line taller than this may be read twice where tiles meet


# --------------------------------------------------------------------------- availability


@functools.cache
def ocr_installed() -> bool:
    """Whether rapidocr and onnxruntime can be imported (looked up once a process, not imported)."""
    return all(importable(name) for name in OCR_MODULES)


def _models_dir() -> Path | None:
    spec = importlib.util.find_spec("rapidocr")
    return Path(spec.origin).parent / "models" if spec is not None and spec.origin else None


def engine_status() -> dict[str, Any]:
    """Whether OCR can run here and with what, judged without importing the engine (for --check)."""
    missing = [name for name in OCR_MODULES if not importable(name)]
    if missing:
        return {"available": False, "engine": None,
                "problem": f"{', '.join(missing)} not installed: {INSTALL_HINT}"}
    models = _models_dir()
    absent = [name for name in _MODEL_FILES.values() if models is None or not (models / name).is_file()]
    if absent:
        return {"available": False, "engine": None,
                "problem": f"the rapidocr package lacks its models ({', '.join(absent)}): reinstall rapidocr"}
    return {"available": True, "problem": None,
            "engine": f"RapidOCR {_version('rapidocr')} (PP-OCRv6 small, onnxruntime {_version('onnxruntime')})"}


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# --------------------------------------------------------------------------- the engine

_engine: Any = None
_engine_lock = threading.Lock()  # creating it, and every call (RapidOCR keeps per-call state)


def _get_engine() -> Any:
    with _engine_lock:
        return _engine or _create_engine()


def _create_engine() -> Any:
    global _engine
    if _engine is None:
        status = engine_status()
        if not status["available"]:
            raise FileSkipped(f"OCR is unavailable: {status['problem']}")
        models = _models_dir()
        assert models is not None
        started = time.perf_counter()
        try:
            from rapidocr import RapidOCR

            params: dict[str, Any] = {"Global.log_level": "error", **_TUNING}
            params.update({f"{task}.model_path": str(models / name) for task, name in _MODEL_FILES.items()})
            _engine = RapidOCR(params=params)
        except Exception as error:  # a broken install: one reason, not a traceback per file
            raise FileSkipped(f"OCR engine failed to start: {short_error(error)}") from None
        logger.info("OCR engine ready in %.1f s", time.perf_counter() - started)
    return _engine


@dataclass(frozen=True)
class Box:
    """One recognized text line: its bounding rectangle in page pixels and its text."""

    x0: float
    y0: float
    x1: float
    y1: float
    text: str

    @property
    def height(self) -> float:
        return self.y1 - self.y0


def recognize(image: Image) -> list[Box]:
    """The text boxes RapidOCR finds on one page (an RGB image), tall pages read in tiles."""
    width, height = image.size
    if height <= _TILE_RATIO * width:
        return _recognize(image, 0)
    step = max(int(2 * width), 4 * _TILE_OVERLAP)
    boxes: list[Box] = []
    for top in range(0, height, step):
        start, end = max(0, top - _TILE_OVERLAP // 2), min(height, top + step + _TILE_OVERLAP // 2)
        for box in _recognize(image.crop((0, start, width, end)), start):
            # A box belongs to the tile its centre falls in, so a line in an overlap is kept once,
            # from the tile that holds all of it.
            if top <= (box.y0 + box.y1) / 2 < top + step:
                boxes.append(box)
        if end >= height:
            break
    return boxes


def _recognize(image: Image, offset: int) -> list[Box]:
    engine = _get_engine()
    with _engine_lock:
        try:
            result = engine(image)
        except Exception as error:  # noqa: BLE001 - onnxruntime and OpenCV raise their own types
            raise FileSkipped(f"OCR failed: {short_error(error)}") from None
    if getattr(result, "boxes", None) is None or not getattr(result, "txts", None):
        return []
    boxes = []
    for points, text in zip(result.boxes, result.txts, strict=False):
        xs = [float(point[0]) for point in points]
        ys = [float(point[1]) for point in points]
        if text.strip():
            boxes.append(Box(min(xs), min(ys) + offset, max(xs), max(ys) + offset, text.strip()))
    return boxes


# --------------------------------------------------------------------------- pages, with progress

#: Whether the page progress bar is wanted in this context (the pipeline sets it for a run).
show_progress: ContextVar[bool] = ContextVar("askany_ocr_progress", default=False)
_cancelled: Callable[[], bool] | None = None


def set_cancel_check(check: Callable[[], bool] | None) -> None:
    """In an ingestion worker process: ``check()`` says the run was interrupted (checked every page)."""
    global _cancelled
    _cancelled = check


class OcrInterrupted(Exception):
    """The ingestion run this worker parses for was interrupted: the file is dropped unfinished."""


@contextmanager
def progress(enabled: bool) -> Iterator[None]:
    token = show_progress.set(enabled)
    try:
        yield
    finally:
        show_progress.reset(token)


def read_pages(pages: Sequence[tuple[int, Callable[[], Image | None]]], name: str) -> Iterator[tuple[int, str]]:
    """(page number, text) for each (page number, render) pair, read one page at a time: an
    interruption waits for one page at most, and a bar shows the pages of a long file. A render
    that gives None (a blank page) has no text."""
    from tqdm import tqdm

    bar = tqdm(total=len(pages), unit="page", desc=f"OCR {name}"[:40], leave=False,
               disable=len(pages) < 2 or not show_progress.get())
    with bar:
        for number, render in pages:
            if _cancelled is not None and _cancelled():
                raise OcrInterrupted(name)
            started = time.perf_counter()
            image = render()
            text = "" if image is None else "\n\n".join(layout(recognize(image)))
            logger.info("OCR %s page %d: %d characters in %.1f s", name, number, len(text),
                        time.perf_counter() - started)
            bar.update(1)
            yield number, text


# --------------------------------------------------------------------------- layout

_CJK_END = re.compile(f"[{CJK_TEXT}，。、；：！？）》」』”]$")
_CJK_START = re.compile(f"^[{CJK_TEXT}，。、；：！？（《「『“]")


def layout(boxes: Iterable[Box]) -> list[str]:
    """Paragraphs in reading order: lines top to bottom, boxes in a line left to right."""
    lines = _lines(list(boxes))
    if not lines:
        return []
    height = statistics.median(line.height for line in lines)
    gaps = [b.y0 - a.y1 for a, b in zip(lines, lines[1:], strict=False)]
    usual_gap = statistics.median_low(gaps) if gaps else 0.0  # low: two lines and a blank one give [9, 35]
    left = min(line.x0 for line in lines)
    right = max(line.x1 for line in lines)
    paragraphs: list[list[str]] = [[lines[0].text]]
    for previous, line in zip(lines, lines[1:], strict=False):
        gap = line.y0 - previous.y1
        breaks = (gap > max(0.8 * height, usual_gap + 0.5 * height)  # a blank line, or more space than usual
                  or previous.x1 < right - 2 * height  # the previous line ended short of the margin
                  or (line.x0 - left > 1.5 * height >= 3 * (previous.x0 - left)))  # an indented first line
        if breaks:
            paragraphs.append([line.text])
        else:
            paragraphs[-1].append(line.text)
    return [_join(parts) for parts in paragraphs]


def _lines(boxes: list[Box]) -> list[Box]:
    """Boxes that share a line (overlapping by half the smaller height) merged, left to right."""
    rows: list[list[Box]] = []
    for box in sorted(boxes, key=lambda b: (b.y0 + b.y1) / 2):
        if rows:
            row = rows[-1]
            top = statistics.fmean(b.y0 for b in row)
            bottom = statistics.fmean(b.y1 for b in row)
            overlap = min(bottom, box.y1) - max(top, box.y0)
            if overlap >= 0.5 * min(bottom - top, box.height):
                row.append(box)
                continue
        rows.append([box])
    merged = []
    for row in rows:
        row.sort(key=lambda b: b.x0)
        text = row[0].text
        for previous, box in zip(row, row[1:], strict=False):
            close = box.x0 - previous.x1 < previous.height
            text += "" if close and _CJK_END.search(text) and _CJK_START.match(box.text) else " "
            text += box.text
        merged.append(Box(min(b.x0 for b in row), min(b.y0 for b in row), max(b.x1 for b in row),
                          max(b.y1 for b in row), text))
    return merged


def _join(parts: list[str]) -> str:
    """Lines of one paragraph: a line break between Chinese characters is no space, else one space."""
    text = parts[0]
    for part in parts[1:]:
        text += ("" if _CJK_END.search(text) and _CJK_START.match(part) else " ") + part
    return text
