"""The chat page: pure helpers (upload names, follow-ups, escaping), then the running app driven by
Gradio's Python client: ask with sources, upload, delete, the not-available notice, two sessions,
script injection and path-escaping uploads.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from askany.context import AskAny
from askany.core.config import Settings
from askany.generation import Answerer
from askany.service import Service, Turn, history_for_model, retrieval_query
from askany.service import uploads as upload_rules
from askany.service.qa import QA
from askany.service.uploads import UploadError, safe_upload_name, upload_destination
from askany.web import serve
from askany.web.handlers import WebUI
from askany.web.render import answer_markdown, escape_markdown, highlight, render_timings

INJECTION_DOC = ("# 安全须知\n\n门禁卡丢失后需要当天挂失。<script>window.__pwned=1</script>"
                 '<img src=x onerror="window.__pwned=2"> 挂失电话是 8001。![跟踪](http://example.com/t.png)\n')
INSTALL_DOC = ("# 安装指南\n\n## 第一步\n\n下载安装包并校验签名。\n\n## 第二步\n\n运行安装程序，选择安装目录。\n\n"
               "## 第三步\n\n重启电脑完成安装。\n")
LEAVE_DOC = "# 员工手册\n\n## 年假\n\n员工每年可以享受十五天带薪年假，工作满十年以后增加到二十天。\n"


# --------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(("given", "expected"), [
    ("../../etc/passwd", "passwd"),
    ("/etc/cron.d/evil.md", "evil.md"),
    ("..\\..\\windows\\evil.md", "evil.md"),
    ("ａｂｃ／．．／报告.md", "报告.md"),  # full-width solidus and dots: NFKC before splitting
    ("\u202egpj.md", "gpj.md"),  # right-to-left override
    ("员工\u200b手册\u2066 2024.md", "员工手册 2024.md"),  # zero-width space, bidi isolate
    ("  .hidden.md  ", "hidden.md"),
    ('a<b>:c"d|e?f*.md', "a_b__c_d_e_f_.md"),
    ("C:\\Users\\me\\年报.docx", "年报.docx"),
    ("名字\x00\x1f.txt", "名字.txt"),
])
def test_safe_upload_name(given: str, expected: str) -> None:
    assert safe_upload_name(given) == expected


@pytest.mark.parametrize("given", ["", "..", "../", "/", "\u202e", ". .", "\x00", "a/b/..", "___"])
def test_safe_upload_name_refuses_empty_names(given: str) -> None:
    with pytest.raises(UploadError):
        safe_upload_name(given)


def test_safe_upload_name_cuts_long_names_keeping_the_extension() -> None:
    name = safe_upload_name("很长的名字" * 40 + ".md")
    assert name.endswith(".md") and len(name.encode()) <= upload_rules.MAX_NAME_BYTES


def test_upload_destination_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "uploads"
    assert upload_destination(root, "default", "../../x.md") == (root / "default" / "x.md").resolve()
    # A knowledge base name is encoded, not folded: "../../etc" gets its own folder inside the root
    # (folding it to "etc" made two knowledge bases share files).
    assert upload_destination(root, "../../etc", "a.md") == (root / "%2E.%2F..%2Fetc" / "a.md").resolve()
    assert upload_destination(root, "..", "a.md").parent.parent == root.resolve()
    with pytest.raises(UploadError):
        upload_destination(root, "  ", "a.md")


def test_the_saved_conversations_key_is_kept_in_the_data_folder(tmp_path: Path) -> None:
    from askany.web.app import conversation_secret

    key = conversation_secret(tmp_path / "data")
    assert key and len(key) >= 40 and conversation_secret(tmp_path / "data") == key  # a restart finds it again
    assert (tmp_path / "data" / "page-secret").stat().st_mode & 0o777 == 0o600
    assert [path.name for path in (tmp_path / "data").iterdir()] == ["page-secret"]  # nothing left aside
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert conversation_secret(blocked) is None  # Gradio's own key, with a warning


def test_follow_up_questions_are_searched_with_their_topic() -> None:
    turns = [Turn(question="如何安装这个软件？", topic="如何安装这个软件？", answer="先下载安装包[1]。")]
    assert retrieval_query("那第二步呢？", turns) == ("如何安装这个软件？ 那第二步呢？", "如何安装这个软件？")
    assert retrieval_query("那第二步呢？", []) == ("那第二步呢？", "那第二步呢？")
    standalone = "数据库每天几点自动备份，备份文件保存多久？"
    assert retrieval_query(standalone, turns) == (standalone, standalone)
    # A chain of follow-ups keeps the original topic instead of growing.
    turns.append(Turn(question="那第二步呢？", topic="如何安装这个软件？", answer="运行安装程序[2]。"))
    assert retrieval_query("第三步呢？", turns)[0] == "如何安装这个软件？ 第三步呢？"


def test_history_is_trimmed_and_loses_old_citations() -> None:
    turns = [Turn(question=f"问题{i}", topic=f"问题{i}", answer=f"回答{i}[1][2]。") for i in range(5)]
    history = history_for_model(turns)
    assert [m["content"] for m in history] == ["问题2", "回答2。", "问题3", "回答3。", "问题4", "回答4。"]
    long_turns = [Turn(question="长" * 10, topic="x", answer="答" * 2000) for _ in range(3)]
    trimmed = history_for_model(long_turns, max_chars=1200)
    assert sum(len(m["content"]) for m in trimmed) <= 1200 and len(trimmed) == 4


def test_highlight_escapes_every_piece() -> None:
    text = '<script>alert(1)</script> 年假 <img src=x onerror="x()"> &amp;'
    rendered = highlight(text, ["年假", "script", "amp"])
    assert "<script" not in rendered and "<img" not in rendered
    assert "&lt;<mark>script</mark>&gt;" in rendered and "<mark>年假</mark>" in rendered
    assert "&amp;<mark>amp</mark>;" in rendered  # the term never splits an entity it was escaped into


def test_answer_markdown_links_known_citations_and_neutralises_markup() -> None:
    text = "年假十五天[1][3]，见【2】。<img src=x onerror=alert(1)> ![t](http://example.com/t.png) [9]"
    rendered = answer_markdown(text, turn=2, known=[1, 2, 3])
    assert 'href="#askany-t2-s1" class="askany-cite"' in rendered and ">[1]</a>" in rendered
    assert 'href="#askany-t2-s2" class="askany-cite"' in rendered
    assert "<img" not in rendered and "&lt;img" in rendered
    assert 'class="askany-image"' in rendered and "<img" not in rendered  # no image is ever loaded
    assert "[9]" in rendered and "askany-t2-s9" not in rendered  # a number that names no source stays text
    assert escape_markdown("a_b*c") == "a\\_b\\*c"
    assert escape_markdown("it's \"q\"") == "it's \"q\""  # no &#x27; with its # escaped


def test_render_timings_in_stage_order() -> None:
    timings = {"total": 1.5, "keyword": 0.012, "rerank": 0.2, "generate": 1.2, "embed": 0.004}
    assert render_timings(timings) == "向量化 4 ms · 关键词检索 12 ms · 重排 200 ms · 生成 1.20 s · 总计 1.50 s"
    assert render_timings({"total": 0.5}, "en") == "total 500 ms"


# --------------------------------------------------------------------------- the running app


class ScriptedGenerator:
    """Streams a fixed reply piece by piece, like an LLM would, so tests can check answers and citations."""

    def __init__(self, reply: str = "<think>先找资料。</think>员工每年有十五天年假[1]。", delay: float = 0.0):
        self.reply = reply
        self.delay = delay
        self.prompts: list[list[dict[str, str]]] = []

    @property
    def context_window(self) -> int:
        return 8192

    def count_tokens(self, text: str) -> int:
        return len(text)

    def stream(self, messages: list[dict[str, str]], enable_thinking: bool) -> Iterator[str]:
        self.prompts.append(messages)
        for start in range(0, len(self.reply), 3):
            if self.delay:
                time.sleep(self.delay)
            yield self.reply[start:start + 3]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def serve_page() -> Iterator[Callable[..., str]]:
    """Start the page on a free loopback port (closed after the test); returns its URL."""
    running: list[Any] = []

    def start(app: AskAny, qa: QA | None = None) -> str:
        blocks = serve(Service(app=app, qa=qa), host="127.0.0.1", port=free_port(), block=False, warm=False)
        running.append(blocks)
        return blocks.local_url

    yield start
    for blocks in running:
        blocks.close()


@pytest.fixture
def upload_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """UPLOAD_DIR for this test only: DATA_DIR (and so DATA_DIR/uploads) is shared by the whole session."""
    root = tmp_path / "uploads"
    monkeypatch.setattr(Settings, "upload_dir", property(lambda self: root))
    return root


def client_for(url: str) -> Any:
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False)


def scripted_qa(app: AskAny, generator: ScriptedGenerator) -> QA:
    return QA(app, Answerer(app.settings, app.models, generator=generator))


def message_text(message: dict[str, Any]) -> str:
    """The text of one chat message, whichever shape the client returns it in."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return str(content)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def table_rows(value: Any) -> list[list[Any]]:
    return value["data"] if isinstance(value, dict) else value


@pytest.mark.usefixtures("empty_db")
def test_an_upload_with_hostile_files_stores_the_good_ones(make_app, serve_page, upload_root, tmp_path) -> None:
    from gradio_client import handle_file

    app = make_app()
    client = client_for(serve_page(app, scripted_qa(app, ScriptedGenerator())))
    docs = tmp_path / "docs"
    files = [write(docs, "faq.json", '[{"question": "密码\\u0000重置", "answer": "找管理员"},'
                                     ' {"question": "VPN", "answer": "先装客户端\\ud800"}]'),
             write(docs, "good.md", "# 报销\n\n差旅报销三十天内提交。\n"),
             write(docs, "broken.docx", "PK not a zip"), write(docs, "empty.md", "")]
    _, table = client.predict([handle_file(str(f)) for f in files], "mixed", "", api_name="/upload")
    rows = {row[0]: row for row in table_rows(table)}
    assert rows["good.md"][1] == rows["faq.json"][1] == "新增"
    assert rows["broken.docx"][1] == rows["empty.md"][1] == "失败" and all(rows[n][3] for n in ("broken.docx", "empty.md"))
    _, documents, _ = client.predict("mixed", api_name="/list_documents")
    assert {row[1] for row in table_rows(documents)} == {"faq.json", "good.md"}


@pytest.mark.usefixtures("empty_db")
def test_upload_ask_with_sources_and_delete(make_app, serve_page, upload_root, tmp_path, tiny_embedding_dir,
                                            tiny_reranker_dir) -> None:
    from gradio_client import handle_file

    app = make_app(embedding_model=str(tiny_embedding_dir), reranker_model=str(tiny_reranker_dir),
                   llm_backend="transformers")
    generator = ScriptedGenerator()
    client = client_for(serve_page(app, scripted_qa(app, generator)))
    docs = tmp_path / "docs"
    files = [write(docs, "员工手册.md", LEAVE_DOC), write(docs, "安全须知.md", INJECTION_DOC),
             write(docs, "notes.xyz", "unsupported")]

    status, table = client.predict([handle_file(str(f)) for f in files], "hr", "人事",
                                   api_name="/upload")
    rows = {row[0]: row for row in table_rows(table)}
    assert rows["员工手册.md"][1] == "新增" and rows["员工手册.md"][2] >= 1
    assert rows["安全须知.md"][1] == "新增"
    assert rows["notes.xyz"][1] == "跳过" and "unsupported" in rows["notes.xyz"][3]
    assert "新增 2" in status
    assert {p.name for p in (upload_root / "hr").iterdir()} == {"notes.xyz", "安全须知.md", "员工手册.md"}

    # The same file with the same tags again is recognised as unchanged.
    _, table = client.predict([handle_file(str(files[0]))], "hr", "人事", api_name="/upload")
    assert table_rows(table)[0][1] == "未变化"

    chat, sources, box, = client.predict("员工每年有几天年假？", "DOCS", ["hr"], [], 5, True, True,
                                         api_name="/respond")
    assert box == ""
    texts = [message_text(m) for m in chat]
    assert texts[0] == "员工每年有几天年假？"
    thought = [m for m in chat if (m.get("metadata") or {}).get("title") == "思考过程"]
    assert thought and "先找资料" in message_text(thought[0])
    answer = texts[-1]
    assert "员工每年有十五天年假" in answer and 'href="#askany-t1-s1"' in answer
    assert "耗时：" in answer and "生成" in answer and "总计" in answer
    assert 'id="askany-t1-s1"' in sources and "员工手册.md" in sources and "<mark>" in sources
    assert "已引用" in sources and "重排" in sources  # cited badge, stage scores
    assert generator.prompts and generator.prompts[-1][-1]["role"] == "user"

    # The injection document: its markup arrives escaped in both the answer and the sources.
    chat, sources, _ = client.predict("门禁卡丢失怎么办？", "DOCS", ["hr"], [], 5, False, False,
                                      api_name="/respond")
    assert "安全须知.md" in sources
    for output in (sources, *(message_text(m) for m in chat)):
        assert "<script" not in output and "<img" not in output and "onerror=\"" not in output
    assert "&lt;script&gt;" in sources and "&lt;img src=x onerror=&quot;" in sources

    summary, documents, _ = client.predict("hr", api_name="/list_documents")
    assert table_rows(summary)[0][:3] == ["hr", 2, 0]  # knowledge base, documents, FAQ files
    assert {row[1] for row in table_rows(documents)} == {"员工手册.md", "安全须知.md"}
    assert all(row[2] >= 1 and row[3] == "人事" for row in table_rows(documents))
    source = next(row[5] for row in table_rows(documents) if row[1] == "安全须知.md")

    message, _, documents, _ = client.predict("hr", source, api_name="/delete_document")
    assert "已从知识库 hr 删除 安全须知.md" in message
    assert [row[1] for row in table_rows(documents)] == ["员工手册.md"]
    assert not (upload_root / "hr" / "安全须知.md").exists()  # the uploaded copy goes too
    message, *_ = client.predict("hr", source, api_name="/delete_document")
    assert "没有文档" in message


@pytest.mark.usefixtures("empty_db")
def test_missing_models_notice_and_status(make_app, serve_page, tmp_path) -> None:
    """No LLM, reranker or embedding model: the page still answers, extractively, and says how to fix it."""
    app = make_app(llm_backend="transformers")
    app.store.replace_documents([])  # database ready
    from askany.ingestion.pipeline import Ingestor

    Ingestor(app).run([write(tmp_path / "docs", "员工手册.md", LEAVE_DOC)], kb="hr", progress=False)
    client = client_for(serve_page(app))

    banner, *_ = client.predict(api_name="/load_page")
    assert "未加载大模型" in banner and "--download-models llm" in banner
    assert "未加载重排模型" in banner and "未加载向量模型" in banner

    chat, sources, _ = client.predict("员工每年有几天带薪年假？", "AUTO", [], [], 3, True, False,
                                      api_name="/respond")
    answer = message_text(chat[-1])
    assert "十五天" in answer and "（摘录自资料，未经大模型生成）" in answer
    assert "未加载大模型，显示的是从资料中摘录的答案：" in answer and "--download-models llm" in answer
    assert 'href="#askany-t1-s1"' in answer and "员工手册.md" in sources

    status, _ = client.predict(api_name="/refresh_status")
    assert "PostgreSQL" in status and "✗" in status and "--download-models reranker" in status
    assert "jieba" in status and "cpu" in status


@pytest.mark.usefixtures("empty_db")
def test_sessions_are_separate_and_follow_ups_use_the_conversation(make_app, serve_page, tmp_path) -> None:
    from askany.ingestion.pipeline import Ingestor

    app = make_app()
    docs = tmp_path / "docs"
    Ingestor(app).run([write(docs, "安装指南.md", INSTALL_DOC), write(docs, "员工手册.md", LEAVE_DOC)],
                      kb="kb", progress=False)
    generator = ScriptedGenerator(reply="请看资料[1]。")
    url = serve_page(app, scripted_qa(app, generator))
    alice, bob = client_for(url), client_for(url)

    results: dict[str, Any] = {}

    def ask(name: str, client: Any, question: str) -> None:
        results[name] = client.predict(question, "DOCS", [], [], 3, False, False, api_name="/respond")

    threads = [threading.Thread(target=ask, args=("alice", alice, "安装这个软件要做哪些步骤？")),
               threading.Thread(target=ask, args=("bob", bob, "员工每年有几天带薪年假？"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [message_text(m) for m in results["alice"][0]][0] == "安装这个软件要做哪些步骤？"
    assert len(results["bob"][0]) == 2

    chat, sources, _ = alice.predict("那第二步呢？", "DOCS", [], [], 3, False, False, api_name="/respond")
    questions = [message_text(m) for m in chat if m["role"] == "user"]
    assert questions == ["安装这个软件要做哪些步骤？", "那第二步呢？"]  # Alice's turns only
    assert "安装指南.md" in sources.split("askany-earlier")[0]  # found through the earlier question
    prompt = generator.prompts[-1]
    assert [m["content"] for m in prompt[1:-1]] == ["安装这个软件要做哪些步骤？", "请看资料。"]
    assert "那第二步呢？" in prompt[-1]["content"]

    chat, *_ = bob.predict("工作满十年以后呢？", "DOCS", [], [], 3, False, False, api_name="/respond")
    assert [message_text(m) for m in chat if m["role"] == "user"] == ["员工每年有几天带薪年假？", "工作满十年以后呢？"]
    chat, sources, _, = alice.predict(api_name="/clear")
    assert chat == [] and "提问后" in sources


@pytest.mark.usefixtures("empty_db")
def test_uploaded_names_cannot_leave_the_upload_folder(make_app, serve_page, upload_root, tmp_path) -> None:
    """Names with ../, backslashes, bidi and zero-width characters land inside UPLOAD_DIR/<kb folder>/."""
    from gradio_client import handle_file

    app = make_app(upload_max_mb=0.01)
    url = serve_page(app)
    client = client_for(url)
    odd = write(tmp_path / "odd", "..\\..\\逃逸\u202e\u200b.md", "# 逃逸\n\n测试文件。\n")
    big = write(tmp_path / "odd", "大文件.md", "大" * 6000)  # 18 KB, above the 10 KB limit

    # A raw multipart upload whose file name climbs out, as a hostile client would send it.
    response = httpx.post(f"{url.rstrip('/')}/gradio_api/upload",
                          files={"files": ("../../../../逃逸2.md", b"# two\n\ntext\n", "text/markdown")})
    assert response.status_code == 200
    raw_path = response.json()[0]
    files = [handle_file(str(odd)), {"path": raw_path, "meta": {"_type": "gradio.FileData"},
                                     "orig_name": "../../../../逃逸2.md"}]
    status, table = client.predict(files, "../../kb", "", api_name="/upload")  # a kb name that climbs
    assert "不能含有 /" in status and table_rows(table) == [] and not list(upload_root.rglob("*.md"))
    status, table = client.predict(files, "kb", "", api_name="/upload")
    stored = sorted(str(p.relative_to(upload_root)) for p in upload_root.rglob("*") if p.is_file())
    folder = "kb/"
    assert len(stored) == 2 and all(p.startswith(folder) and "/" not in p[len(folder):] for p in stored), stored
    assert not any(ch in "".join(stored) for ch in "\u202e\u200b\\")
    assert not list(tmp_path.glob("逃逸*")) and not list(Path("/").glob("逃逸*"))
    assert all(row[1] == "新增" for row in table_rows(table)), table

    # Too large: refused by Gradio before it reaches the handler, and by the handler itself.
    with pytest.raises(Exception, match="(?i)size|large|413"):
        client.predict([handle_file(str(big))], "kb", "", api_name="/upload")
    status, table = next(iter(reversed(list(WebUI(Service(app=app)).upload([str(big)], "kb", "",
                                                                       progress=lambda *a, **k: None)))))
    assert table_rows(table)[0][1] == "失败" and "UPLOAD_MAX_MB" in table_rows(table)[0][3]
    assert not (upload_root / "kb" / "大文件.md").exists()


@pytest.mark.usefixtures("empty_db")
def test_local_tiny_llm_answers_through_the_page(make_app, serve_page, tmp_path, tiny_llm_dir) -> None:
    """The real transformers backend behind the page: its (random) words stream into a generated answer."""
    from askany.ingestion.pipeline import Ingestor

    app = make_app(llm_model=str(tiny_llm_dir), llm_backend="transformers", llm_max_new_tokens=12)
    Ingestor(app).run([write(tmp_path / "docs", "员工手册.md", LEAVE_DOC)], kb="hr", progress=False)
    client = client_for(serve_page(app))
    banner, *_ = client.predict(api_name="/load_page")
    assert "大模型" not in banner  # the LLM is there; only the missing retrieval models are reported
    chat, sources, _ = client.predict("员工每年有几天带薪年假？", "DOCS", ["hr"], [], 3, True, False,
                                      api_name="/respond")
    answer = message_text(chat[-1])
    assert "生成" in answer and "首字" in answer and "摘录自资料" not in answer
    assert "员工手册.md" in sources


@pytest.mark.usefixtures("empty_db")
def test_stop_keeps_what_was_written_and_regenerate_replaces_the_answer(make_app, serve_page, tmp_path) -> None:
    from askany.ingestion.pipeline import Ingestor

    app = make_app(llm_backend="transformers")
    Ingestor(app).run([write(tmp_path / "docs", "员工手册.md", LEAVE_DOC)], kb="hr", progress=False)
    generator = ScriptedGenerator(reply="员工每年有十五天年假[1]。" + "后面还有很多很多内容。" * 40, delay=0.4)
    client = client_for(serve_page(app, scripted_qa(app, generator)))
    job = client.submit("员工每年有几天年假？", "DOCS", ["hr"], [], 3, False, False, api_name="/respond")
    deadline = time.monotonic() + 30
    while "十五天" not in "".join(message_text(m) for m in (job.outputs() or [[[]]])[-1][0][-1:]):
        assert time.monotonic() < deadline, "the answer never started streaming"
        time.sleep(0.1)
    stopped = time.monotonic()
    client.predict(api_name="/stop")
    chat, sources, _ = job.result(timeout=10)
    assert time.monotonic() - stopped < 1.0  # ended at once, not after the remaining ~60 pieces
    answer = message_text(chat[-1])
    assert "十五天" in answer and "已停止生成" in answer
    assert answer.count("后面还有很多很多内容") < 10
    assert "员工手册.md" in sources  # the model handed its partial answer back, with its sources

    generator.reply, generator.delay = "重新写的答案[1]。", 0.0
    chat, sources, _ = client.predict("DOCS", ["hr"], [], 3, False, False, api_name="/regenerate")
    assert [message_text(m) for m in chat if m["role"] == "user"] == ["员工每年有几天年假？"]
    assert "重新写的答案" in message_text(chat[-1]) and "已停止" not in message_text(chat[-1])
    assert len(generator.prompts) == 2 and len(generator.prompts[-1]) == 2  # asked afresh, no history of itself


@pytest.mark.usefixtures("empty_db")
def test_source_viewer_shows_the_passage_in_its_document(make_app, serve_page, tmp_path) -> None:
    from askany.ingestion.pipeline import Ingestor

    app = make_app(chunk_size=40, chunk_overlap=8)
    text = "# 手册\n\n" + "".join(f"## 第{n}节\n\n第{n}节的内容说明，这一段讲规则{n}。<b>粗</b>\n\n" for n in range(1, 9))
    Ingestor(app).run([write(tmp_path / "docs", "手册.md", text)], kb="kb", progress=False)
    client = client_for(serve_page(app))
    _, sources, _ = client.predict("规则5", "DOCS", [], [], 3, False, False, api_name="/respond")
    chunk = re.search(r'data-chunk="(\d+)"', sources).group(1)
    viewer = client.predict(chunk, api_name="/view_source")
    hit = re.search(r'<span class="askany-ctx askany-ctx-hit"[^>]*>(.*?)</span>', viewer, re.S).group(1)
    assert "规则" in hit and "手册.md" in viewer and "第 " in viewer
    assert viewer.count('class="askany-ctx') <= 5 and "&lt;b&gt;" in viewer and "<b>" not in viewer
    whole = client.predict(chunk, api_name="/view_document")
    assert all(f"规则{n}" in whole for n in range(1, 9)) and "全文" in whole and "askany-ctx-hit" in whole
    gone = client.predict("999999999", api_name="/view_source")
    assert "no longer stored" in gone


@pytest.mark.usefixtures("empty_db")
def test_knowledge_bases_created_and_deleted_with_messages_in_both_languages(make_app, tmp_path) -> None:
    """The page's kb handlers: hostile names get one line in the page's language; delete asks for the name."""
    from askany.ingestion.pipeline import Ingestor

    zh, en = WebUI(Service(app=make_app())), WebUI(Service(app=make_app(ui_language="en")))
    hostile = {"": ("不能为空", "is empty"), "x" * 65: ("最多 64 个字符", "at most 64"),
               "a\x00b": ("不可见字符", "invisible"), "hr\u202e": ("不可见字符", "invisible"),
               "../etc": ("不能含有 /", "cannot hold /"), "全角／": ("不能含有 /", "cannot hold /")}
    for name, (chinese, english) in hostile.items():
        for ui, expected in ((zh, chinese), (en, english)):
            message = ui.create_kb(name)[0]
            assert expected in message and "\n" not in message, (name, message)
    assert zh.service.kb_names() == []

    message, box, *lists = zh.create_kb("人事")
    assert "已创建知识库 人事" in message and box == ""
    assert lists[6]["value"] == "人事" and "人事" in lists[6]["choices"]  # the upload target
    assert ["人事", 0, 0, 0] in lists[0] and "人事" in lists[4]["choices"]  # the chat filter lists it
    assert "已有名为 人事" in zh.create_kb("人事")[0] and "already exists" in en.create_kb("人事")[0]
    Ingestor(zh.service.app).run([write(tmp_path / "docs", "员工手册.md", LEAVE_DOC)], kb="人事", progress=False)

    message, row, _ = zh.ask_delete_kb("人事")
    assert row["visible"] is True and "1 个文档" in message
    assert en.ask_delete_kb("")[1]["visible"] is False
    message, row, *_ = zh.confirm_delete_kb("人事", "人")
    assert "不一致" in message and row["visible"] is True and zh.service.kb_names() == ["人事"]
    message, row, box, summary, *_ = zh.confirm_delete_kb("人事", " 人事 ")
    assert "已删除知识库 人事：1 个文档" in message and row["visible"] is False and summary == []
    assert "There is no knowledge base named 人事" in en.confirm_delete_kb("人事", "人事")[0]
    progress, *_ = en.start_upload([str(write(tmp_path / "up", "a.md", LEAVE_DOC))], "a/b", "")
    assert "cannot hold /" in progress
