"""OCR through ingestion: the eval documents rendered to page images and image-only PDFs, read back.

    python bench/ocr.py                 # all 256 documents, images and PDFs (~1 h on 2 cores)
    python bench/ocr.py --limit 32      # the first 32 documents (~8 min)
    python bench/ocr.py --limit 4 --formats png   # seconds: checks the script

Each document of `--docs` (Markdown; `#` marks dropped) is drawn with the CJK font CI installs
(WenQuanYi Micro Hei) on A4 pages at `--dpi` (150: 1240 x 1754 pixels, text 12 pt, 1.5 line
spacing, paragraphs apart), black on white, wrapped at the margin by measured width. A
one-page document becomes a PNG, a longer one a multi-page TIFF (`--formats png`), and every
document an image-only PDF with the same pages (`--formats pdf`). The original text files, the
images and the PDFs are ingested into three knowledge bases of one fresh embedded database,
in one process (INGEST_WORKERS=0: onnxruntime already uses every core), keyword only.

Figures: character error rate against the text that was drawn (Levenshtein distance over
characters / characters drawn, both NFKC-normalised, all whitespace removed, totals over the
set: a character is a character whether OCR or the source has it), the pages OCR read per second
of ingestion (wall clock, parse to commit, DB writes included), and keyword hit@1 / MRR on the
eval questions whose gold document is in the set, for each knowledge base; the text version,
ingested in the same run, is the baseline. Goals: CER <= 3 %, hit@1 within 0.03 of text.
Results: stdout and bench/results/ocr.json.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Any

import common

FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
A4_INCHES = (8.27, 11.69)
CER_GOAL = 0.03
HIT1_GAP = 0.03


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=Path, default=common.DEFAULT_DOCS, help="folder of Markdown documents")
    parser.add_argument("--queries", type=Path, default=common.DEFAULT_QUERIES, help="queries.jsonl")
    parser.add_argument("--limit", type=int, default=0, help="first N documents by name (0: all)")
    parser.add_argument("--formats", default="png,pdf", help="png (images) and/or pdf, comma-separated")
    parser.add_argument("--dpi", type=int, default=150, help="page resolution (default 150)")
    parser.add_argument("--point-size", type=float, default=12.0, help="text size in points (default 12)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data folder")
    parser.add_argument("--output", type=Path, default=None, help="JSON output (default bench/results/ocr.json)")
    return parser.parse_args()


# --------------------------------------------------------------------------- rendering


def drawn_text(markdown: str) -> list[str]:
    """The paragraphs of a document as they are drawn: heading marks dropped, blank lines between."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", markdown):
        text = " ".join(line.strip().lstrip("#").strip() for line in block.splitlines() if line.strip())
        if text:
            paragraphs.append(text)
    return paragraphs


def render_pages(paragraphs: list[str], dpi: int, point_size: float) -> list[Any]:
    """A4 pages (grayscale PIL images) holding the paragraphs, wrapped by measured width."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = (round(side * dpi) for side in A4_INCHES)
    size = round(point_size * dpi / 72)
    margin = round(0.8 * dpi)
    font = ImageFont.truetype(str(FONT), size)
    line_height, paragraph_gap = round(1.5 * size), size
    lines: list[str | None] = []  # None: a paragraph gap
    for paragraph in paragraphs:
        line = ""
        for character in paragraph:
            if font.getlength(line + character) > width - 2 * margin:
                lines.append(line)
                line = character.lstrip()
            else:
                line += character
        lines.append(line)
        lines.append(None)
    pages, page, y = [], None, height
    for line in lines:
        if line is None:
            y += paragraph_gap
            continue
        if y + line_height > height - margin:
            page = Image.new("L", (width, height), 255)
            pages.append(page)
            y = margin
        ImageDraw.Draw(page).text((margin, y), line, font=font, fill=0)
        y += line_height
    return pages


def write_images(pages: list[Any], folder: Path, stem: str, dpi: int) -> Path:
    if len(pages) == 1:
        path = folder / f"{stem}.png"
        pages[0].save(path, dpi=(dpi, dpi))
    else:
        path = folder / f"{stem}.tif"
        pages[0].save(path, save_all=True, append_images=pages[1:], compression="tiff_deflate", dpi=(dpi, dpi))
    return path


def write_pdf(pages: list[Any], folder: Path, stem: str, dpi: int) -> Path:
    path = folder / f"{stem}.pdf"
    pages[0].save(path, "PDF", resolution=float(dpi), save_all=True, append_images=pages[1:])
    return path


# --------------------------------------------------------------------------- scoring


def normalized(text: str) -> str:
    from askany.ingestion.chunking import LOCATION_MARK

    text = re.sub(f"{LOCATION_MARK}[a-z]+ [0-9]+", "", text)
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, bit-parallel (Myers 1999 / Hyyrö 2001) over Python integers: O(len(b))
    big-integer steps of len(a) bits, milliseconds for two pages."""
    if not a:
        return len(b)
    masks: dict[str, int] = {}
    for index, character in enumerate(a):
        masks[character] = masks.get(character, 0) | (1 << index)
    full = (1 << len(a)) - 1
    top = 1 << (len(a) - 1)
    positive, negative, distance = full, 0, len(a)
    for character in b:
        match = masks.get(character, 0)
        x = match | negative
        d0 = ((((x & positive) + positive) & full) ^ positive) | x
        hp = negative | (~(d0 | positive) & full)
        hn = positive & d0
        if hp & top:
            distance += 1
        elif hn & top:
            distance -= 1
        hp = ((hp << 1) | 1) & full
        hn = (hn << 1) & full
        positive = hn | (~(d0 | hp) & full)
        negative = hp & d0
    return distance


# --------------------------------------------------------------------------- run


def main() -> None:
    args = parse_args()
    formats = [name.strip() for name in args.formats.split(",") if name.strip()]
    if not FONT.is_file():
        raise SystemExit(f"{FONT} is missing: install Debian's fonts-wqy-microhei")
    load_start = os.getloadavg()
    common.log(f"load average at start: {load_start}")
    from askany.ingestion import pipeline
    from askany.ingestion.pipeline import Ingestor
    from askany.retrieval.evaluation import evaluate, read_queries, scores_as_dict

    files = common.select_docs(args.docs, args.limit)
    queries = [query for query in read_queries(args.queries) if query.doc_id in {f.stem for f in files}]
    sources: dict[str, str] = {}
    page_counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="askany-bench-ocr-") as scratch, \
            common.fresh_data_dir(args.keep_data) as data_dir:
        folders = {name: Path(scratch) / name for name in ["text", *formats]}
        for folder in folders.values():
            folder.mkdir()
        started = time.perf_counter()
        for file in files:
            markdown = file.read_text(encoding="utf-8")
            (folders["text"] / file.name).write_text(markdown, encoding="utf-8")
            paragraphs = drawn_text(markdown)
            sources[file.stem] = "\n".join(paragraphs)
            pages = render_pages(paragraphs, args.dpi, args.point_size)
            page_counts[file.stem] = len(pages)
            if "png" in formats:
                write_images(pages, folders["png"], file.stem, args.dpi)
            if "pdf" in formats:
                write_pdf(pages, folders["pdf"], file.stem, args.dpi)
        total_pages = sum(page_counts.values())
        common.log(f"rendered {len(files)} documents, {total_pages} pages in {time.perf_counter() - started:.0f} s")

        app = common.make_app(data_dir, ingest_workers=0, embedding_enabled=False, ocr_max_pages=1000)
        texts: dict[str, dict[str, str]] = {name: {} for name in folders}
        parse_seconds: dict[str, float] = {name: 0.0 for name in folders}
        real_load = pipeline.load_file
        current: list[str] = ["text"]

        def capturing_load(path: Path, *rest: Any, **options: Any) -> Any:
            begun = time.perf_counter()
            loaded = real_load(path, *rest, **options)
            parse_seconds[current[0]] += time.perf_counter() - begun
            texts[current[0]][Path(path).stem] = loaded.text
            return loaded

        pipeline.load_file = capturing_load
        results: dict[str, Any] = {}
        try:
            for name, folder in folders.items():
                current[0] = name
                common.log(f"ingesting {name} ({len(files)} files)")
                begun = time.perf_counter()
                report = Ingestor(app).run([folder], kb=f"ocr-{name}", progress=True)
                seconds = time.perf_counter() - begun
                failed = [(Path(r.path).name, r.reason) for r in report.failed]
                scores = evaluate(app, queries, kb=f"ocr-{name}", setups=["keyword"], progress=False)
                distance = characters = 0
                for stem, source in sources.items():
                    expected = normalized(source)
                    distance += edit_distance(expected, normalized(texts[name].get(stem, "")))
                    characters += len(expected)
                results[name] = {
                    "files": len(files), "failed": failed, "chunks": report.chunks_written,
                    "seconds": round(seconds, 1), "parse_seconds": round(parse_seconds[name], 1),
                    "pages": total_pages if name != "text" else None,
                    "pages_per_second": round(total_pages / seconds, 3) if name != "text" else None,
                    "cer": round(distance / max(characters, 1), 4), "characters": characters,
                    "keyword": scores_as_dict(scores)[0], "load_average": os.getloadavg(),
                }
                common.log(f"{name}: {seconds:.0f} s, CER {results[name]['cer']:.2%}, "
                           f"hit@1 {scores[0].hit1:.3f}, load {os.getloadavg()}")
        finally:
            pipeline.load_file = real_load

    baseline = results["text"]["keyword"]["hit1"]
    rows = []
    for name, result in results.items():
        hit1 = result["keyword"]["hit1"]
        rows.append([name, result["files"], len(result["failed"]), result["pages"] or "-",
                     result["seconds"], result["pages_per_second"] or "-", f"{result['cer']:.2%}",
                     f"{hit1:.3f}", f"{result['keyword']['mrr']:.3f}", f"{hit1 - baseline:+.3f}",
                     "-" if name == "text" else common.verdict(result["cer"] <= CER_GOAL
                                                              and baseline - hit1 <= HIT1_GAP)])
    print(common.table(["kb", "files", "failed", "pages", "seconds", "pages/s", "CER", "hit@1", "MRR",
                        "vs text", f"CER<={CER_GOAL:.0%}, hit@1 gap<={HIT1_GAP}"], rows))
    print(f"questions: {len(queries)}; load average at start {tuple(round(v, 2) for v in load_start)}, "
          f"at end {tuple(round(v, 2) for v in os.getloadavg())}")
    for name, result in results.items():
        for file, reason in result["failed"][:5]:
            print(f"  {name} failed: {file}: {reason}")
    path = common.write_json("ocr", {"machine": common.machine(), "args": {k: str(v) for k, v in vars(args).items()},
                                     "questions": len(queries), "pages_by_document": page_counts,
                                     "results": results}, args.output)
    common.log(f"figures in {path}")


if __name__ == "__main__":
    main()
