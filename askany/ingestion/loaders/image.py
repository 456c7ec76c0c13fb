"""Images (screenshots, photos of documents, scans) read through OCR (``ocr``), frame by frame.

Pillow reads only the header before the checks: the pixel count (MAX_IMAGE_MEGAPIXELS, which
also refuses a decompression bomb, a small file declaring a huge image) and the number of
frames of a multi-page TIFF (OCR_MAX_PAGES). A multi-frame image gets a page line per frame.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from askany.ingestion.chunking import location_line
from askany.ingestion.loaders.common import short_error
from askany.ingestion.loaders.limits import ParseLimits, over_limit
from askany.ingestion.loaders.ocr import OCR_MODULES, read_pages
from askany.ingestion.loaders.registry import Document, FileSkipped, register

if TYPE_CHECKING:
    from PIL.Image import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@register(*IMAGE_SUFFIXES, empty_reason="no text found by OCR", requires=("PIL", *OCR_MODULES), needs_ocr=True)
def parse_image(data: bytes, stem: str, limits: ParseLimits) -> Document:
    """The text OCR finds, in reading order and paragraphs; the title is the file's stem."""
    from PIL import Image as PILImage

    image = _open(data, limits)
    with image:
        frames = getattr(image, "n_frames", 1)
        if frames > limits.ocr_max_pages:
            raise over_limit(f"image has {frames:,} frames", f"{limits.ocr_max_pages:,}", "OCR_MAX_PAGES")

        def frame(index: int) -> Callable[[], Image]:
            def render() -> Image:
                try:
                    image.seek(index)
                    check_pixels(image.size, limits)
                    return to_rgb(_exif_upright(image) if index == 0 else image)
                except FileSkipped:
                    raise
                except (OSError, ValueError, SyntaxError, EOFError, PILImage.DecompressionBombError) as error:
                    raise FileSkipped(f"corrupt image: {short_error(error)}") from None
            return render

        pages = list(read_pages([(index + 1, frame(index)) for index in range(frames)], stem))
    if frames == 1:
        return Document(stem, pages[0][1])
    return Document(stem, "\n\n".join(f"{location_line('page', number)}\n{text}" for number, text in pages
                                      if text.strip()))


def _open(data: bytes, limits: ParseLimits) -> Image:
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # Pillow's own bomb warning: the check below says it better
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            image = PILImage.open(io.BytesIO(data))
    except PILImage.DecompressionBombError as error:
        raise over_limit(f"image is a decompression bomb ({short_error(error)})",
                         f"{limits.max_image_pixels / 1e6:g} megapixels", "MAX_IMAGE_MEGAPIXELS") from None
    except UnidentifiedImageError:
        raise FileSkipped("corrupt image: not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise FileSkipped(f"corrupt image: {short_error(error)}") from None
    check_pixels(image.size, limits)
    return image


def check_pixels(size: tuple[int, int], limits: ParseLimits) -> None:
    """Refuse an image (or a page about to be rendered) of more than MAX_IMAGE_MEGAPIXELS."""
    width, height = size
    if width * height > limits.max_image_pixels:
        raise over_limit(f"image has {width:,} x {height:,} pixels", f"{limits.max_image_pixels / 1e6:g} megapixels",
                         "MAX_IMAGE_MEGAPIXELS")


def _exif_upright(image: Image) -> Image:
    from PIL import ImageOps

    return ImageOps.exif_transpose(image) or image


def to_rgb(image: Image) -> Image:
    """RGB for the OCR engine; transparency over white (dark text on a transparent screenshot
    would vanish on black)."""
    from PIL import Image as PILImage

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
