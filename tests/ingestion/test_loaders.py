"""Unit tests for askany.ingestion.loaders: every input is built in tmp_path, no models, no database."""

from __future__ import annotations

import io
import json
import logging
import zipfile
from pathlib import Path

import docx
import pytest
from pypdf import PdfReader, PdfWriter

from askany.core.errors import AskAnyError
from askany.ingestion.chunking import location_line
from askany.ingestion.loaders import (
    SUPPORTED_SUFFIXES,
    FaqEntry,
    FileSkipped,
    decode_text,
    load_file,
)
from askany.ingestion.loaders.ocr import ocr_installed

LIMIT = 1 << 20


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def skipped_reason(path: Path, max_bytes: int = LIMIT) -> str:
    with pytest.raises(FileSkipped) as caught:
        load_file(path, max_bytes)
    return caught.value.reason


def make_pdf(lines: list[str], title: str | None = None) -> bytes:
    """A one-page PDF whose text extracts as ``lines``, Chinese included.

    The font is Type0/Identity-H with character ids equal to the UTF-16 code
    units and a ToUnicode CMap mapping them back: no font file is needed for
    text extraction, so this stays a few hundred bytes and needs only the stdlib.
    """
    chars = sorted({c for line in lines for c in line})
    cmap = "\n".join(
        [
            "/CIDInit /ProcSet findresource begin",
            "12 dict begin",
            "begincmap",
            "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
            "/CMapName /Adobe-Identity-UCS def",
            "/CMapType 2 def",
            "1 begincodespacerange",
            "<0000> <FFFF>",
            "endcodespacerange",
            f"{len(chars)} beginbfchar",
            *[f"<{ord(c):04X}> <{ord(c):04X}>" for c in chars],
            "endbfchar",
            "endcmap",
            "CMapName currentdict /CMap defineresource pop",
            "end",
            "end",
        ]
    ).encode()
    ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
    ops += ["<" + "".join(f"{ord(c):04X}" for c in line) + "> Tj T*" for line in lines]
    content = "\n".join([*ops, "ET"]).encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type0 /BaseFont /STSong-Light /Encoding /Identity-H "
        b"/DescendantFonts [6 0 R] /ToUnicode 7 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /STSong-Light "
        b"/CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> /DW 1000 >>",
        b"<< /Length %d >>\nstream\n" % len(cmap) + cmap + b"\nendstream",
    ]
    if title:
        objects.append(b"<< /Title <FEFF" + title.encode("utf-16-be").hex().upper().encode() + b"> >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    info = b" /Info %d 0 R" % len(objects) if title else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, info, xref)
    return bytes(out)


def encrypt_pdf(data: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password, owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


# --------------------------------------------------------------------------- decoding

SIMPLIFIED = [
    "这是一个简体中文段落，用于测试编码检测。",
    "欢迎使用本系统。如有问题请联系管理员。",
    "数据库连接失败",
    "配置文件",
    "你好",
]
TRADITIONAL = [
    "繁體中文的文件內容，保持原樣。",
    "系統將於今晚十點進行維護，請提前儲存您的工作。",
    "我們的產品支援多種語言。",
    "使用者手冊",
    "錯誤代碼",
    "網路",
    "資料",
]


@pytest.mark.parametrize("text", SIMPLIFIED + TRADITIONAL)
def test_decode_gbk(text: str) -> None:
    assert decode_text(text.encode("gbk")) == (text, "gb18030")


@pytest.mark.parametrize("text", TRADITIONAL)
def test_decode_big5_keeps_traditional(text: str) -> None:
    decoded, encoding = decode_text(text.encode("big5"))
    assert decoded == text
    assert encoding == "big5"


def test_decode_utf8_and_bom_and_newlines() -> None:
    assert decode_text("第一行\r\n第二行\r第三行".encode()) == ("第一行\n第二行\n第三行", "utf-8")
    assert decode_text(b"\xef\xbb\xbf" + "带 BOM 的文本".encode()) == ("带 BOM 的文本", "utf-8-sig")
    assert decode_text("Windows 记事本".encode("utf-16")) == ("Windows 记事本", "utf-16")


def test_decode_other_legacy_encoding_falls_back_to_detector() -> None:
    text, _ = decode_text("Grüße aus Köln, schöne Grüße von der Straße.".encode("cp1252"))
    assert text == "Grüße aus Köln, schöne Grüße von der Straße."


def test_decode_rejects_binary() -> None:
    with pytest.raises(FileSkipped, match="binary"):
        decode_text(b"abc\x00def")
    with pytest.raises(FileSkipped, match="binary"):
        decode_text(bytes(range(1, 32)) * 10)


# --------------------------------------------------------------------------- text files


def test_markdown_title_from_first_h1(tmp_path: Path) -> None:
    path = write(
        tmp_path, "guide.md", "```\n# not a title\n```\n\n# 安装指南\n\n## 步骤\n\n运行 `pip install`。\n"
    )
    loaded = load_file(path, LIMIT)
    assert loaded.title == "安装指南"
    assert loaded.text.startswith("```\n# not a title")
    assert "## 步骤" in loaded.text
    assert loaded.faqs == [] and loaded.encoding == "utf-8" and loaded.path == path


def test_txt_without_heading_uses_stem(tmp_path: Path) -> None:
    loaded = load_file(write(tmp_path, "说明.TXT", "普通文本，没有标题。\n"), LIMIT)
    assert (loaded.title, loaded.text) == ("说明", "普通文本，没有标题。")


def test_gbk_and_big5_files(tmp_path: Path) -> None:
    gbk = load_file(write(tmp_path, "gbk.txt", SIMPLIFIED[0].encode("gbk")), LIMIT)
    big5 = load_file(write(tmp_path, "big5.md", TRADITIONAL[0].encode("big5")), LIMIT)
    assert (gbk.text, gbk.encoding) == (SIMPLIFIED[0], "gb18030")
    assert (big5.text, big5.encoding) == (TRADITIONAL[0], "big5")


def test_utf8_bom_file(tmp_path: Path) -> None:
    loaded = load_file(
        write(tmp_path, "bom.md", b"\xef\xbb\xbf# \xe6\xa0\x87\xe9\xa2\x98\r\n\r\nbody"), LIMIT
    )
    assert loaded.title == "标题"
    assert loaded.text == "# 标题\n\nbody"


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.md", b"", "empty file"),
        ("blank.txt", b" \n\t\r\n ", "empty file"),
        ("blob.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
        ("image.xyz", b"data", "unsupported extension .xyz"),
        ("Makefile", b"all:", "unsupported extension (none)"),
        ("broken.pdf", b"%PDF-1.4\nthis is not really a pdf", "corrupt PDF"),
        ("garbage.pdf", b"\x00\x01\x02 not a pdf at all", "corrupt PDF"),
        ("broken.docx", b"PK\x03\x04 truncated zip", "corrupt DOCX"),
        ("faq.json", b'[{"question": ', "invalid JSON"),
        ("faq.jsonl", b" \n\n ", "empty file"),
    ],
)
def test_skipped_files(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    assert skipped_reason(write(tmp_path, name, data)).startswith(reason)


def test_skipped_is_user_error_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "x.xyz", b"1")
    with pytest.raises(AskAnyError) as caught:
        load_file(path, LIMIT)
    assert str(path) in str(caught.value)
    assert caught.value.path == path


def test_missing_file(tmp_path: Path) -> None:
    assert skipped_reason(tmp_path / "nope.md") == "file not found"


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "folder.md").mkdir()
    assert skipped_reason(tmp_path / "folder.md") == "not a regular file"


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "secret.md", "内容")

    def deny(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", deny)
    assert skipped_reason(path) == "unreadable: permission denied"


def test_too_large(tmp_path: Path) -> None:
    assert (
        skipped_reason(write(tmp_path, "big.txt", "x" * 200), max_bytes=100)
        == "larger than the 100-byte limit"
    )
    sparse = tmp_path / "huge.pdf"
    with sparse.open("wb") as handle:
        handle.truncate(50 * (1 << 20) + 1)  # sparse: costs no disk, never read
    assert skipped_reason(sparse, max_bytes=50 * (1 << 20)) == "larger than the 50 MB limit"


def test_supported_suffixes() -> None:
    assert SUPPORTED_SUFFIXES == {
        ".md",
        ".markdown",
        ".txt",
        ".text",
        ".pdf",
        ".docx",
        ".html",
        ".htm",
        ".json",
        ".jsonl",
        ".csv",
        ".xlsx",
        ".pptx",
        *((".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff") if ocr_installed() else ()),
    }


# --------------------------------------------------------------------------- PDF


def test_pdf_chinese_text_and_metadata_title(tmp_path: Path) -> None:
    lines = ["第一章 概述", "升级到 v2.3.1 后出现 ERR-2041 错误。", "请检查 k8s 配置。"]
    loaded = load_file(write(tmp_path, "manual.pdf", make_pdf(lines, title="运维手册")), LIMIT)
    assert loaded.title == "运维手册"
    assert loaded.text == location_line("page", 1) + "\n" + "\n".join(lines)
    assert loaded.encoding is None


def test_pdf_title_falls_back_to_first_line_and_joins_wrapped_chinese(tmp_path: Path) -> None:
    lines = ["概述", "数据库连接池的配置项包括最大连接数和超", "时时间等参数。", "短行"]
    loaded = load_file(write(tmp_path, "wrapped.pdf", make_pdf(lines)), LIMIT)
    assert loaded.title == "概述"
    assert loaded.text == location_line("page", 1) + "\n概述\n数据库连接池的配置项包括最大连接数和超时时间等参数。\n短行"


def test_pdf_without_text(tmp_path: Path) -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    assert skipped_reason(write(tmp_path, "scan.pdf", buffer.getvalue())).startswith("no extractable text")


def test_pdf_encrypted(tmp_path: Path) -> None:
    plain = make_pdf(["加密文档的内容。"])
    assert skipped_reason(write(tmp_path, "locked.pdf", encrypt_pdf(plain, "secret"))) == (
        "encrypted PDF (password required)"
    )
    # An empty user password only restricts editing: anyone can read it, so should we.
    assert load_file(write(tmp_path, "open.pdf", encrypt_pdf(plain, "")), LIMIT).text.endswith("\n加密文档的内容。")


# --------------------------------------------------------------------------- DOCX


def make_docx(path: Path) -> Path:
    document = docx.Document()
    document.add_heading("产品手册", level=0)
    document.add_heading("安装", level=1)
    document.add_paragraph("安装前请阅读本节。")
    document.add_heading("环境要求", level=2)
    table = document.add_table(rows=3, cols=2)
    for row, cells in zip(
        table.rows, [("项目", "要求"), ("操作系统", "Linux"), ("内存", "16 GB")], strict=True
    ):
        for cell, value in zip(row.cells, cells, strict=True):
            cell.text = value
    document.add_paragraph("")
    document.add_paragraph("表格之后的段落。")
    document.save(path)
    return path


def test_docx_headings_and_table(tmp_path: Path) -> None:
    loaded = load_file(make_docx(tmp_path / "手册.docx"), LIMIT)
    assert loaded.title == "产品手册"
    assert loaded.text == (
        "# 产品手册\n\n# 安装\n\n安装前请阅读本节。\n\n## 环境要求\n\n"
        "项目 | 要求\n操作系统 | Linux\n内存 | 16 GB\n\n表格之后的段落。"
    )


def test_docx_core_title_wins(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "a.docx")
    document = docx.Document(path)
    document.core_properties.title = "核心属性标题"
    document.save(path)
    assert load_file(path, LIMIT).title == "核心属性标题"


def test_docx_zip_without_word_content(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "not a word document")
    assert skipped_reason(write(tmp_path, "fake.docx", buffer.getvalue())).startswith("corrupt DOCX")


# --------------------------------------------------------------------------- HTML

HTML = """<!DOCTYPE html>
<html><head><title>帮助中心</title><style>body { color: red; }</style>
<script>var secret = "不应出现";</script></head>
<body>
<nav><a href="/">首页</a> | <a href="/x">导航链接</a></nav>
<h1>常见问题</h1>
<p>这是第一段，
包含换行。</p>
<h2>安装 <small>v2.3.1</small></h2>
<ul><li>第一项</li><li>第二项 <b>加粗</b></li></ul>
<div>没有段落标签的文本<br>第二行</div>
<table><tr><th>错误码</th><th>含义</th></tr><tr><td>ERR-2041</td><td>连接超时</td></tr></table>
<pre>kubectl get pods
kubectl logs x</pre>
<script>document.write("也不应出现")</script>
</body></html>
"""


def test_html_structure(tmp_path: Path) -> None:
    loaded = load_file(write(tmp_path, "help.html", HTML), LIMIT)
    assert loaded.title == "帮助中心"
    assert loaded.text == (
        "# 常见问题\n\n这是第一段，包含换行。\n\n## 安装 v2.3.1\n\n第一项\n第二项 加粗\n\n"
        "没有段落标签的文本\n第二行\n\n错误码 | 含义\nERR-2041 | 连接超时\n\n"
        "```\nkubectl get pods\nkubectl logs x\n```"
    )
    for hidden in ("不应出现", "color", "导航链接"):
        assert hidden not in loaded.text


def test_html_declared_gbk_and_h1_title(tmp_path: Path) -> None:
    page = '<html><head><meta charset="gb2312"></head><body><h1>简体标题</h1><p>正文内容。</p></body></html>'
    loaded = load_file(write(tmp_path, "page.htm", page.encode("gbk")), LIMIT)
    assert (loaded.title, loaded.text, loaded.encoding) == ("简体标题", "# 简体标题\n\n正文内容。", "gb18030")


def test_html_big5_without_declaration(tmp_path: Path) -> None:
    page = f"<p>{TRADITIONAL[1]}</p>"
    loaded = load_file(write(tmp_path, "tw.html", page.encode("big5")), LIMIT)
    assert (loaded.text, loaded.encoding, loaded.title) == (TRADITIONAL[1], "big5", "tw")


def test_html_with_only_scripts_is_empty(tmp_path: Path) -> None:
    assert skipped_reason(write(tmp_path, "app.html", "<script>app()</script>")) == "empty file"


# --------------------------------------------------------------------------- FAQ


def test_faq_json_list_with_bad_rows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [
        {"question": "如何重置密码？", "answer": "在登录页点击“忘记密码”。", "tags": ["账户", " 密码 "]},
        {"question": "支持哪些系统？", "answer": "Linux 和 macOS。", "tags": "系统, 平台;安装"},
        {"question": "", "answer": "没有问题"},
        {"question": "没有答案"},
        "not an object",
        {"问题": "中文键可以吗？", "答案": "可以。", "标签": "中文"},
        {"question": "标签类型错误", "answer": "保留条目，忽略标签。", "tags": 42},
    ]
    with caplog.at_level(logging.WARNING, logger="askany.ingestion.loaders"):
        loaded = load_file(write(tmp_path, "faq.json", json.dumps(rows, ensure_ascii=False)), LIMIT)
    assert loaded.text == "" and loaded.title == "faq"
    assert loaded.faqs == [
        FaqEntry("如何重置密码？", "在登录页点击“忘记密码”。", ["账户", "密码"]),
        FaqEntry("支持哪些系统？", "Linux 和 macOS。", ["系统", "平台", "安装"]),
        FaqEntry("中文键可以吗？", "可以。", ["中文"]),
        FaqEntry("标签类型错误", "保留条目，忽略标签。", []),
    ]
    messages = [record.getMessage() for record in caplog.records]
    assert any("item 3" in message and "question" in message for message in messages)
    assert any("item 4" in message and "answer" in message for message in messages)
    assert any("item 5" in message for message in messages)


def test_faq_warnings_are_capped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [{"question": f"Q{i}"} for i in range(100)] + [{"question": "Q", "answer": "A"}]
    with caplog.at_level(logging.WARNING, logger="askany.ingestion.loaders"):
        loaded = load_file(write(tmp_path, "faq.json", json.dumps(rows)), LIMIT)
    assert loaded.faqs == [FaqEntry("Q", "A", [])]
    assert len(caplog.records) == 6
    assert "95 more invalid items skipped" in caplog.records[-1].getMessage()


def test_faq_json_object_with_faqs_key(tmp_path: Path) -> None:
    data = {"faqs": [{"question": "Q?", "answer": "A."}]}
    assert load_file(write(tmp_path, "faq.json", json.dumps(data)), LIMIT).faqs == [FaqEntry("Q?", "A.", [])]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"items": []}', "not an FAQ file"),
        ('"just a string"', "not an FAQ file"),
        ("[]", "no valid FAQ entries"),
        ('[{"question": "only question"}]', "no valid FAQ entries"),
    ],
)
def test_faq_json_wrong_shape(tmp_path: Path, content: str, reason: str) -> None:
    assert skipped_reason(write(tmp_path, "faq.json", content)).startswith(reason)


def test_faq_jsonl_skips_bad_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    content = "\n".join(
        [
            json.dumps({"question": "第一问", "answer": "第一答", "tags": ["a"]}, ensure_ascii=False),
            "{broken json",
            "",
            json.dumps([1, 2]),
            json.dumps({"question": "第二问", "answer": "第二答"}, ensure_ascii=False),
        ]
    )
    with caplog.at_level(logging.WARNING, logger="askany.ingestion.loaders"):
        loaded = load_file(write(tmp_path, "faq.jsonl", content), LIMIT)
    assert loaded.faqs == [FaqEntry("第一问", "第一答", ["a"]), FaqEntry("第二问", "第二答", [])]
    assert any("line 2" in record.getMessage() for record in caplog.records)
    assert any("line 4" in record.getMessage() for record in caplog.records)


def test_faq_csv_english_headers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    content = (
        "Question,Answer,Tags\n"
        '如何安装？,"运行 pip install askany,然后初始化。","安装;入门"\n'
        ",缺少问题,\n"
        '多行答案？,"第一行\n第二行",\n'
    )
    with caplog.at_level(logging.WARNING, logger="askany.ingestion.loaders"):
        loaded = load_file(write(tmp_path, "faq.csv", content), LIMIT)
    assert loaded.faqs == [
        FaqEntry("如何安装？", "运行 pip install askany,然后初始化。", ["安装", "入门"]),
        FaqEntry("多行答案？", "第一行\n第二行", []),
    ]
    assert any("row 3" in record.getMessage() for record in caplog.records)


def test_faq_csv_chinese_headers_gbk_encoded(tmp_path: Path) -> None:
    content = "问题,答案,标签\n怎么联系客服？,拨打热线电话。,客服，联系\n"
    loaded = load_file(write(tmp_path, "常见问题.csv", content.encode("gbk")), LIMIT)
    assert loaded.faqs == [FaqEntry("怎么联系客服？", "拨打热线电话。", ["客服", "联系"])]
    assert loaded.encoding == "gb18030"


def test_faq_csv_tab_separated(tmp_path: Path) -> None:
    loaded = load_file(write(tmp_path, "faq.csv", "question\tanswer\nQ1\tA1\n"), LIMIT)
    assert loaded.faqs == [FaqEntry("Q1", "A1", [])]


def test_faq_csv_without_required_columns(tmp_path: Path) -> None:
    reason = skipped_reason(write(tmp_path, "data.csv", "name,price\napple,3\n"))
    assert reason == "CSV needs question/answer (问题/答案) columns; found name, price"
