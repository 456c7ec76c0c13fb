"""Issue 16: images and scanned PDF pages through the real offline OCR engine, Excel and PowerPoint,
ingested into the session database and found by keyword search with their page, slide and column.

Images are drawn here with the CJK font CI installs (Debian fonts-wqy-microhei); OCR tests are
skipped only when that font or the OCR packages are missing. Pages are small and hold a few lines,
so the whole file costs about half a minute, most of it the engine's start and a few pages.
"""

from __future__ import annotations

import io
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import xlsxwriter
from pptx import Presentation
from pptx.util import Inches
from pypdf import PdfReader, PdfWriter

from askany.core.config import load_settings
from askany.ingestion.chunking import location_line, split_document
from askany.ingestion.loaders import FileSkipped, load_file
from askany.ingestion.loaders.limits import ParseLimits
from askany.ingestion.loaders.ocr import (
    Box,
    OcrInterrupted,
    layout,
    ocr_installed,
    read_pages,
    set_cancel_check,
)
from askany.ingestion.pipeline import Ingestor
from askany.service.status import collect_status
from askany.storage.store import SearchFilter
from tests.ingestion.test_loaders import make_pdf

FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
LIMIT = 8 << 20
needs_ocr = pytest.mark.skipif(not (ocr_installed() and FONT.is_file()),
                               reason="needs rapidocr + onnxruntime and fonts-wqy-microhei")


def draw(lines: list[str], width: int = 720, size: int = 28) -> object:
    """White page, black Chinese text: one line per entry, an empty entry a blank line."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(FONT), size)
    image = Image.new("RGB", (width, 40 + int(1.6 * size) * len(lines)), "white")
    pen = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        pen.text((20, 20 + int(1.6 * size) * index), line, font=font, fill="black")
    return image


def image_pdf(*pages: object) -> bytes:
    buffer = io.BytesIO()
    pages[0].save(buffer, "PDF", resolution=100.0, save_all=True, append_images=list(pages[1:]))
    return buffer.getvalue()


def found(app, query: str, kb: str) -> list:
    """The stored chunks a keyword query ranks, best first."""
    ranked = app.store.keyword_search(app.analyzer.terms(query), 5, SearchFilter(kbs=[kb]))
    chunks = app.store.fetch_chunks([chunk_id for chunk_id, _ in ranked])
    return [chunks[chunk_id] for chunk_id, _ in ranked]


def limits(**changes: object) -> ParseLimits:
    return replace(ParseLimits.from_settings(load_settings()), **changes)


# --------------------------------------------------------------------------- layout and page lines (no engine)


def test_layout_orders_boxes_into_lines_and_paragraphs() -> None:
    height = 30
    boxes = [  # shuffled; the second line is two boxes; a blank line before the last paragraph
        Box(20, 100, 300, 100 + height, "错误代码 ERR-2041"),
        Box(20, 20, 700, 20 + height, "数据库连接超时的处理办法是先检查防"),
        Box(20, 60, 200, 60 + height, "火墙，再"),
        Box(210, 58, 420, 58 + height, "重启服务。"),
        Box(20, 180, 500, 180 + height, "第二段：证书过期。"),
    ]
    assert layout(boxes) == ["数据库连接超时的处理办法是先检查防火墙，再重启服务。", "错误代码 ERR-2041",
                             "第二段：证书过期。"]


def test_an_interrupted_run_stops_ocr_before_the_next_page() -> None:
    """In a worker process, the run's stop event is checked before every page."""
    rendered: list[int] = []

    def page(number: int):
        return lambda: rendered.append(number)  # a blank page (None): no engine needed

    pages = read_pages([(1, page(1)), (2, page(2)), (3, page(3))], "scan")
    stop = threading.Event()
    set_cancel_check(stop.is_set)
    try:
        assert next(pages) == (1, "")
        stop.set()
        with pytest.raises(OcrInterrupted):
            next(pages)
    finally:
        set_cancel_check(None)
    assert rendered == [1]


def test_location_lines_become_chunk_locations_under_the_same_heading() -> None:
    text = f"{location_line('page', 1)}\n# 手册\n\n第一页的内容。\n\n{location_line('page', 2)}\n第二页的内容。"
    chunks = split_document(text, len, 200, 0)
    assert [(c.text, c.heading_path, c.location) for c in chunks] == [
        ("手册\n第一页的内容。", ("手册",), ("page", 1)),
        ("手册\n第二页的内容。", ("手册",), ("page", 2)),
    ]


# --------------------------------------------------------------------------- OCR: images and PDFs


@needs_ocr
def test_screenshot_and_mixed_pdf_are_read_by_ocr_and_found_with_their_page(make_app, tmp_path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    draw(["故障排查：数据库连接超时", "请先检查防火墙白名单。", "", "错误代码 ERR-2041 表示证书过期。"]).save(
        docs / "dialog.png")
    # A mixed PDF: page 1 has a text layer, page 2 is a scan.
    writer = PdfWriter()
    writer.add_page(PdfReader(io.BytesIO(make_pdf(["第一页有文字层，讲的是机房迁移计划。"]))).pages[0])
    writer.add_page(PdfReader(io.BytesIO(image_pdf(draw(["第二页是扫描件：蓝鲸备份在周日凌晨。"])))).pages[0])
    buffer = io.BytesIO()
    writer.write(buffer)
    (docs / "mixed.pdf").write_bytes(buffer.getvalue())

    app = make_app()
    report = Ingestor(app).run([docs], kb="ocr", progress=False)
    assert report.count("new") == 2 and not report.failed, report.results

    dialog = found(app, "防火墙白名单", "ocr")[0]
    assert Path(dialog.source).name == "dialog.png" and "ERR-2041" in dialog.text
    assert "page" not in dialog.metadata  # a one-frame image has no pages
    scanned = found(app, "蓝鲸备份", "ocr")[0]
    assert Path(scanned.source).name == "mixed.pdf" and scanned.metadata == {"page": 2}
    assert "周日凌晨" in scanned.text
    layer = found(app, "机房迁移计划", "ocr")[0]
    assert layer.metadata == {"page": 1} and layer.text == "第一页有文字层，讲的是机房迁移计划。"

    # The page reaches the citation: the page's source card, and the API's references.
    from askany.server.chat import references
    from askany.service import Service
    from askany.web.render import render_source

    result = Service(app=app).ask("蓝鲸备份在什么时候？", kbs=["ocr"], mode="keyword", rerank=False)
    source = next(s for s in result.sources if Path(s.source).name == "mixed.pdf")
    assert source.location == {"page": 2}
    assert "第 2 页" in render_source(source, 0, True, [], "zh")
    assert {"file": source.source, "page": 2}.items() <= next(
        r for r in references(result) if r["file"] == source.source).items()


@needs_ocr
def test_ocr_limits_and_broken_images_give_one_line_reasons(tmp_path) -> None:
    frames = [draw([f"第{n}页"], width=200) for n in (1, 2, 3)]
    tiff = tmp_path / "scan.tif"
    frames[0].save(tiff, save_all=True, append_images=frames[1:])
    with pytest.raises(FileSkipped, match=r"image has 3 frames \(limit 2: raise OCR_MAX_PAGES"):
        load_file(tiff, LIMIT, limits=limits(ocr_max_pages=2))
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(image_pdf(*frames))
    with pytest.raises(FileSkipped, match=r"3 pages without a text layer to OCR \(limit 2: raise OCR_MAX_PAGES"):
        load_file(pdf, LIMIT, limits=limits(ocr_max_pages=2))
    big = tmp_path / "big.png"
    draw(["像素太多"], width=400).save(big)
    with pytest.raises(FileSkipped, match=r"400 x \d+ pixels \(limit 0.01 megapixels: raise MAX_IMAGE_MEGAPIXELS"):
        load_file(big, LIMIT, limits=limits(max_image_pixels=10_000))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(FileSkipped, match=": corrupt image: "):
        load_file(broken, LIMIT)
    # A decompression bomb: 30,000 x 30,000 declared in a few hundred bytes, refused before decoding.
    bomb = tmp_path / "bomb.png"
    from PIL import Image

    Image.new("1", (30_000, 30_000)).save(bomb, optimize=True)
    assert bomb.stat().st_size < 200_000
    with pytest.raises(FileSkipped, match="MAX_IMAGE_MEGAPIXELS"):
        load_file(bomb, LIMIT)


@needs_ocr
def test_with_ocr_off_images_are_unsupported_and_scans_have_no_text(make_app, tmp_path) -> None:
    docs = tmp_path / "off"
    docs.mkdir()
    draw(["不会被读取"], width=300).save(docs / "shot.png")
    (docs / "scan.pdf").write_bytes(image_pdf(draw(["扫描件"], width=300)))
    report = Ingestor(make_app(ocr_enabled=False)).run([docs], kb="off", progress=False)
    by_name = {Path(result.path).name: result for result in report.results}
    assert by_name["shot.png"].status == "skipped"
    assert by_name["shot.png"].reason == ("unsupported extension .png (images are read by OCR, which is off: "
                                          "OCR_ENABLED=false)")
    assert by_name["scan.pdf"].status == "failed"
    assert by_name["scan.pdf"].reason == ("no extractable text (scanned or image-only PDF?): OCR is off "
                                          "(OCR_ENABLED=false)")


@needs_ocr
def test_turning_ocr_on_reads_a_stored_mixed_pdf_again(make_app, tmp_path) -> None:
    docs = tmp_path / "later"
    docs.mkdir()
    writer = PdfWriter()
    writer.add_page(PdfReader(io.BytesIO(make_pdf(["文字层这一页讲的是年度预算。"]))).pages[0])
    writer.add_page(PdfReader(io.BytesIO(image_pdf(draw(["扫描页：采购审批流程"], width=400)))).pages[0])
    with (docs / "budget.pdf").open("wb") as handle:
        writer.write(handle)
    (docs / "notes.md").write_text("# 笔记\n\n与 OCR 无关的文档。", encoding="utf-8")
    off = Ingestor(make_app(ocr_enabled=False)).run([docs], kb="later", progress=False)
    assert off.count("new") == 2
    app = make_app()
    assert found(app, "采购审批", "later") == []
    on = Ingestor(app).run([docs], kb="later", progress=False)
    assert {Path(r.path).name: r.status for r in on.results} == {"budget.pdf": "changed", "notes.md": "unchanged"}
    assert found(app, "采购审批", "later")[0].metadata == {"page": 2}


def test_check_says_whether_ocr_is_available(make_settings) -> None:
    status = collect_status(make_settings(), db_probe=False)["ocr"]
    if ocr_installed():
        assert status["ok"] and status["engine"].startswith("RapidOCR ") and "PP-OCRv6" in status["engine"]
    else:
        assert not status["ok"] and "pip install rapidocr onnxruntime" in status["problem"]
    off = collect_status(make_settings(ocr_enabled=False), db_probe=False)["ocr"]
    assert not off["ok"] and off["problem"] == "OCR_ENABLED=false"


# --------------------------------------------------------------------------- Excel and PowerPoint


def make_test_cases(path: Path) -> Path:
    """A test-case sheet: a merged title row, a header, a module merged over two rows, a formula
    with its cached value (as Excel saves it), an empty row, and an empty second sheet."""
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet("登录测试")
    sheet.merge_range("A1:D1", "登录模块测试用例")
    sheet.write_row("A2", ["用例编号", "模块", "测试步骤", "预期结果"])
    sheet.merge_range("B3:B4", "账户登录")
    sheet.write("A3", "TC-001")
    sheet.write_row("C3", ["连续输入错误密码五次", "账户被锁定十五分钟"])
    sheet.write("A4", "TC-002")
    sheet.write_row("C4", ["输入正确的密码", "进入控制台首页"])
    sheet.write("A6", "用例总数")
    sheet.write_formula("B6", "=COUNTA(A3:A4)", None, 2)
    workbook.add_worksheet("空白页")
    workbook.close()
    return path


def make_deck(path: Path) -> Path:
    deck = Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[1])
    first.shapes.title.text = "部署架构"
    first.placeholders[1].text = "主节点运行在上海机房\n备节点在北京机房"
    first.notes_slide.notes_text_frame.text = "讲解时强调灾备切换时间为三十秒"
    second = deck.slides.add_slide(deck.slide_layouts[5])
    second.shapes.title.text = "端口清单"
    table = second.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(6), Inches(1.5)).table
    for row, values in enumerate([["服务", "端口"], ["统一网关", "8443"], ["数据库", "5432"]]):
        for column, value in enumerate(values):
            table.cell(row, column).text = value
    deck.save(str(path))
    return path


def test_xlsx_rows_are_found_by_any_cell_and_name_their_columns(make_app, tmp_path) -> None:
    docs = tmp_path / "sheets"
    docs.mkdir()
    make_test_cases(docs / "cases.xlsx")
    loaded = load_file(docs / "cases.xlsx", LIMIT)
    assert loaded.text == (
        "# 登录测试\n\n登录模块测试用例\n\n"
        "用例编号: TC-001 | 模块: 账户登录 | 测试步骤: 连续输入错误密码五次 | 预期结果: 账户被锁定十五分钟\n\n"
        "用例编号: TC-002 | 模块: 账户登录 | 测试步骤: 输入正确的密码 | 预期结果: 进入控制台首页\n\n"
        "用例编号: 用例总数 | 模块: 2")  # the formula's cached value; the empty row and sheet are skipped
    app = make_app()
    assert not Ingestor(app).run([docs], kb="xlsx", progress=False).failed
    for query in ("TC-002", "进入控制台首页", "输入正确的密码"):
        chunk = found(app, query, "xlsx")[0]
        assert chunk.heading_path == ["登录测试"]
        assert "用例编号: TC-002 | 模块: 账户登录 | 测试步骤: 输入正确的密码 | 预期结果: 进入控制台首页" in chunk.text


def test_pptx_titles_text_tables_and_notes_keep_their_slide(make_app, tmp_path) -> None:
    docs = tmp_path / "decks"
    docs.mkdir()
    make_deck(docs / "deploy.pptx")
    app = make_app()
    report = Ingestor(app).run([docs], kb="pptx", progress=False)
    assert report.count("new") == 1 and not report.failed
    notes = found(app, "灾备切换", "pptx")[0]
    assert notes.metadata == {"slide": 1} and notes.heading_path == ["部署架构"] and notes.title == "部署架构"
    assert notes.text == "部署架构\n主节点运行在上海机房\n备节点在北京机房\n\n备注：讲解时强调灾备切换时间为三十秒"
    ports = found(app, "统一网关", "pptx")[0]
    assert ports.metadata == {"slide": 2} and "服务: 统一网关 | 端口: 8443\n服务: 数据库 | 端口: 5432" in ports.text


def test_corrupt_office_files_are_skipped_with_a_reason(tmp_path) -> None:
    for name, kind in (("broken.xlsx", "XLSX"), ("broken.pptx", "PPTX")):
        path = tmp_path / name
        path.write_bytes(b"PK not a zip")
        with pytest.raises(FileSkipped, match=f": corrupt {kind}: not a zip archive"):
            load_file(path, LIMIT)
    cases = make_test_cases(tmp_path / "cases.xlsx")
    with pytest.raises(FileSkipped, match=r"limit 50: raise MAX_XML_ELEMENTS"):
        load_file(cases, LIMIT, limits=limits(max_xml_elements=50))
    deck = make_deck(tmp_path / "deck.pptx")
    with pytest.raises(FileSkipped, match=r"limit 50: raise MAX_XML_ELEMENTS"):
        load_file(deck, LIMIT, limits=limits(max_xml_elements=50))


@needs_ocr
def test_the_page_upload_and_the_cli_take_the_same_formats(make_app, run_cli, tmp_path) -> None:
    from askany.service import Service
    from askany.web.handlers import WebUI

    folder = tmp_path / "incoming"
    folder.mkdir()
    files = [make_test_cases(folder / "用例.xlsx"), make_deck(folder / "架构.pptx"), folder / "报错截图.png"]
    draw(["报错：磁盘配额已满"], width=400).save(files[2])
    app = make_app(upload_dir=tmp_path / "uploads")
    *_, (status, table) = WebUI(Service(app=app)).upload([str(f) for f in files], "page", "",
                                                          progress=lambda *a, **k: None)
    rows = table.values.tolist() if hasattr(table, "values") else table
    assert sorted(row[0] for row in rows) == sorted(f.name for f in files) and all(row[1] == "新增" for row in rows)
    assert Path(found(app, "磁盘配额", "page")[0].source).name == "报错截图.png"

    code, out, err = run_cli("--ingest", str(folder), "--kb", "cli", "--no-progress")
    assert code == 0, out + err
    assert Path(found(app, "磁盘配额", "cli")[0].source).name == "报错截图.png"
    assert Path(found(app, "灾备切换", "cli")[0].source).name == "架构.pptx"
    assert Path(found(app, "TC-002", "cli")[0].source).name == "用例.xlsx"
