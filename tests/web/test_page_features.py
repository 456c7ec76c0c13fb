"""The page's features in Debian's headless Chromium: Markdown answers and what stays inert in them,
the source viewer, stop, reload, regenerate, 👍/👎 through to --export-feedback and --eval, and a
50-file background upload while the chat answers. Screenshots of every tab in both languages go to
tests/web/screenshots/ (git-ignored), or ASKANY_SCREENSHOTS.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from askany.ingestion.pipeline import Ingestor
from askany.service import Service
from askany.web import serve
from tests.web.test_page import INJECTION_DOC, LEAVE_DOC, ScriptedGenerator, free_port, scripted_qa, write

pytestmark = pytest.mark.slow
SCREENSHOTS = Path(os.environ.get("ASKANY_SCREENSHOTS") or Path(__file__).parent / "screenshots")
RICH_REPLY = """员工每年有十五天年假[1]。步骤：

1. 在系统里提交 "年假" 申请
2. 等主管审批

| 工龄 | 天数 |
|---|--:|
| 不满十年 | 15 |

```bash
kubectl rollout restart deploy/web -n 'prod'
```

It's "quoted" <tag> & more. <script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">
[点我](javascript:window.__pwned=3) ![t](http://example.com/t.png)"""
LONG_REPLY = "员工每年有十五天年假[1]。" + "下面慢慢展开说明。" * 60


class SlowIngestService(Service):
    """Ingestion that takes a while per file, so a test can watch the progress while the chat answers."""

    def ingest(self, paths: list[Path], **options: Any):  # noqa: ANN201
        on_result = options.pop("on_result", None)

        def slowly(result: Any) -> None:
            time.sleep(0.12)
            if on_result is not None:
                on_result(result)
        return super().ingest(paths, on_result=slowly, **options)


def answers(page: Any) -> int:
    return page.locator("#askany-chat .askany-timings").count()


def ask(page: Any, question: str, expected: int) -> None:
    page.fill("#askany-question textarea", question)
    page.click("#askany-send")
    page.wait_for_function(f"() => document.querySelectorAll('#askany-chat .askany-timings').length >= {expected}",
                           timeout=20000)


TAB_CONTENT = {"chat": "#askany-question", "docs": "#askany-files", "status": "#askany-status"}
# Records the conversation gr.BrowserState writes to localStorage, before Gradio encrypts it: it
# stringifies the value and stores the result in the same task, so at setItem the conversation
# last stringified is the one being stored. A test can then wait for what it needs to be kept.
RECORD_SAVES = """(() => {
  const stringify = JSON.stringify, setItem = Storage.prototype.setItem;
  let last = "";
  JSON.stringify = function (value, ...rest) {
    const text = stringify.call(this, value, ...rest);
    if (value && value.version === 1 && Array.isArray(value.turns)) last = text;
    return text;
  };
  Storage.prototype.setItem = function (key, value) {
    setItem.call(this, key, value);
    if (key === "askany-conversation") window.__askanyStored = last;
  };
})();"""


def shoot(page: Any, language: str, tabs: list[str], prefix: str = "page",
          names: tuple[str, ...] = ("chat", "docs", "status")) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, label in zip(names, tabs, strict=True):
        page.get_by_role("tab", name=label).click()
        page.locator(TAB_CONTENT[name]).first.wait_for(state="visible", timeout=10000)
        path = SCREENSHOTS / f"{prefix}-{language}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000


def stored_conversation_has(page: Any, text: str) -> None:
    """Wait until the conversation kept in localStorage holds `text` (see RECORD_SAVES)."""
    page.wait_for_function("text => (window.__askanyStored || '').includes(text)", arg=text, timeout=15000)


@pytest.mark.usefixtures("empty_db")
def test_page_features_in_a_browser(chromium, make_app, run_cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(type(make_app().settings), "upload_dir", property(lambda self: tmp_path / "uploads"))
    app = make_app(llm_backend="transformers")
    docs = tmp_path / "docs"
    Ingestor(app).run([write(docs, "员工手册.md", LEAVE_DOC), write(docs, "安全须知.md", INJECTION_DOC)],
                      kb="hr", progress=False)
    generator = ScriptedGenerator(RICH_REPLY, delay=0.0)
    server = serve(SlowIngestService(qa=scripted_qa(app, generator)), host="127.0.0.1", port=free_port(),
                   block=False, warm=False)
    english = serve(Service(app=make_app(ui_language="en")), host="127.0.0.1", port=free_port(), block=False,
                    warm=False)
    requests: list[str] = []
    dialogs: list[str] = []
    many = [write(tmp_path / "many", f"文件{n:02d}.md", f"# 文件{n}\n\n第 {n} 个文件的内容。\n") for n in range(50)]
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    context.add_init_script(RECORD_SAVES)
    try:
        context.on("request", lambda request: requests.append(request.url))
        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(server.local_url)
        page.wait_for_selector("#askany-question textarea", timeout=15000)

        # Markdown: a list, a table, a code block with a copy button, quotes as themselves.
        ask(page, "员工每年有几天年假？", 1)
        chat = page.locator("#askany-chat")
        assert chat.locator("ol li").count() == 2 and chat.locator("table th").count() == 2
        assert "kubectl rollout restart deploy/web -n 'prod'" in chat.locator(".askany-code pre").inner_text()
        assert chat.locator(".askany-code button.askany-copy").count() == 1
        text = chat.inner_text()
        assert 'It\'s "quoted" <tag> & more.' in text and "&#x27;" not in text and "\\" not in text
        # ... and what a model or a document injects stays inert.
        assert "<script>window.__pwned=1</script>" in text
        assert page.evaluate("typeof window.__pwned") == "undefined" and not dialogs
        assert page.locator("#askany-chat script, #askany-chat img, #askany-sources img").count() == 0
        assert page.locator("#askany-chat a[href^='javascript'], #askany-chat [onerror]").count() == 0
        chat.locator(".askany-code button.askany-copy").click()

        # The source viewer opens at the cited passage, then shows the whole document.
        chat.locator("a.askany-cite").first.click()
        page.wait_for_selector("#askany-viewer .askany-ctx-hit", timeout=10000)
        assert "十五天" in page.inner_text("#askany-viewer .askany-ctx-hit")
        assert "员工手册.md" in page.inner_text("#askany-viewer")
        page.click("#askany-viewer-full")
        page.wait_for_function("() => document.querySelector('#askany-viewer').innerText.includes('全文')",
                               timeout=10000)

        # 👎 with a comment, stored with the answer.
        page.get_by_label("Dislike").last.click()
        page.wait_for_selector("#askany-feedback textarea", timeout=10000)
        page.fill("#askany-feedback textarea", "应该说明十年以后是二十天")
        page.click("#askany-feedback-send")
        page.wait_for_function("() => document.querySelector('#askany-feedback-note').innerText"
                               ".includes('说明已保存')", timeout=10000)

        # Stop ends a slow stream within a second and keeps what was written.
        generator.reply, generator.delay = LONG_REPLY, 0.3
        page.fill("#askany-question textarea", "年假能不能分开休？")
        page.click("#askany-send")
        page.wait_for_function("() => { const m = document.querySelectorAll('#askany-chat .message');"
                               " return m.length && m[m.length - 1].innerText.includes('十五天'); }",
                               timeout=20000)
        stopped = time.monotonic()
        page.click("#askany-stop")
        page.wait_for_function("() => document.querySelector('#askany-chat').innerText.includes('已停止生成')",
                               timeout=5000)
        assert time.monotonic() - stopped < 1.0
        assert page.inner_text("#askany-chat").count("下面慢慢展开说明") < 20

        # Regenerate replaces the stopped answer; a reload keeps the conversation.
        generator.reply, generator.delay = "可以分开休[1]。", 0.0
        page.click("#askany-regenerate")
        page.wait_for_function("() => document.querySelector('#askany-chat').innerText.includes('可以分开休')"
                               " && !document.querySelector('#askany-chat').innerText.includes('已停止生成')",
                               timeout=20000)
        # The conversation reaches localStorage (encrypted, gr.BrowserState) just after the answer.
        stored_conversation_has(page, "可以分开休")
        page.reload()
        page.wait_for_function("() => { const c = document.querySelector('#askany-chat');"
                               " return c && c.innerText.includes('可以分开休'); }", timeout=15000)
        assert page.inner_text("#askany-chat").count("年假能不能分开休") == 1

        # 👍 on the restored answer, then the same thumb again: Gradio 6 reports liked "" and the row goes.
        rated = len(Service(app=app).feedback.list())
        page.get_by_label("Like", exact=True).last.click()
        page.wait_for_function("() => document.querySelector('#askany-feedback-note').innerText.includes('👍')",
                               timeout=10000)
        assert len(Service(app=app).feedback.list()) == rated + 1
        page.get_by_label("Liked", exact=True).last.click()
        page.wait_for_function("() => document.querySelector('#askany-feedback-note').innerText"
                               ".includes('已撤回评价')", timeout=10000)
        assert len(Service(app=app).feedback.list()) == rated

        # 50 files upload in the background; the chat answers meanwhile.
        page.get_by_role("tab", name="文档").click()
        with page.expect_response(lambda r: "/gradio_api/upload" in r.url, timeout=60000):
            page.set_input_files("#askany-files input[type=file]", [str(p) for p in many])
        page.wait_for_function("() => document.querySelector('#askany-files').innerText.includes('文件49')",
                               timeout=30000)
        page.get_by_role("button", name="上传并导入").click()
        page.wait_for_selector("#askany-upload-progress .askany-progress", timeout=15000)
        page.wait_for_function("() => /已完成 [1-9]\\d*\\/50/.test(document.querySelector("
                               "'#askany-upload-progress').innerText)", timeout=20000)
        page.get_by_role("tab", name="问答").click()
        ask(page, "员工每年有几天年假？", 3)
        during = page.evaluate("document.querySelector('#askany-upload-progress').innerText")
        assert re.search(r"已完成 \d+/50", during), during  # answered while the upload still ran
        page.get_by_role("tab", name="文档").click()
        page.wait_for_function("() => document.querySelector('#askany-upload-progress').innerText"
                               ".includes('导入完成')", timeout=60000)
        assert "新增 50" in page.inner_text("#askany-upload-progress")
        shoot(page, "zh", ["问答", "文档", "状态"])

        page = context.new_page()
        page.goto(english.local_url)
        page.wait_for_selector("#askany-question textarea", timeout=15000)
        shoot(page, "en", ["Chat", "Documents", "Status"])
    finally:
        context.close()
        server.close()
        english.close()

    outside = [url for url in requests if not url.startswith(("http://127.0.0.1:", "data:", "blob:"))]
    assert requests and not outside, outside
    feedback = tmp_path / "feedback.jsonl"
    status, out, err = run_cli("--export-feedback", str(feedback))
    assert status == 0, err
    lines = [json.loads(line) for line in feedback.read_text(encoding="utf-8").splitlines()]
    assert [(line["rating"], line["comment"], line["doc_id"]) for line in lines] == [
        ("down", "应该说明十年以后是二十天", "员工手册")]
    assert lines[0]["question"] == "员工每年有几天年假？" and "kubectl" in lines[0]["answer"]
    assert lines[0]["settings"]["query_type"] == "AUTO"
    status, out, err = run_cli("--eval", str(feedback), "--kb", "hr", "--json")
    assert status == 0 and json.loads(out)["questions"] == 1, err


def box(page: Any, elem_id: str) -> Any:
    return page.locator(f"#{elem_id} :is(textarea, input)").first


def choose(page: Any, elem_id: str, option: str) -> None:
    """Pick an option of a Gradio dropdown the way a user does: open it, click the option."""
    box(page, elem_id).click()
    page.get_by_role("option", name=option, exact=True).click()


def open_page(context: Any, url: str) -> Any:
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#askany-question textarea", timeout=15000)
    return page


def create_kb(page: Any, name: str, expected: str) -> None:
    box(page, "askany-kb-new").fill(name)
    page.click("#askany-kb-create")
    says(page, "askany-kb-status", expected)


def says(page: Any, elem_id: str, text: str) -> None:
    page.wait_for_function("([id, text]) => (document.getElementById(id)?.innerText || '').includes(text)",
                           arg=[elem_id, text], timeout=20000)


@pytest.mark.usefixtures("empty_db")
def test_knowledge_bases_managed_in_a_browser(chromium, make_app, tmp_path: Path, monkeypatch) -> None:
    """Create a kb on the page (a bad name first), upload into it, ask in it, delete it after typing its
    name; screenshots of the kb controls in both languages."""
    monkeypatch.setattr(type(make_app().settings), "upload_dir", property(lambda self: tmp_path / "uploads"))
    app = make_app(llm_backend="transformers")
    Ingestor(app).run([write(tmp_path / "docs", "员工手册.md", LEAVE_DOC)], kb="hr", progress=False)
    service = Service(qa=scripted_qa(app, ScriptedGenerator("差旅报销要在三十天内提交发票[1]。", delay=0.0)))
    server = serve(service, host="127.0.0.1", port=free_port(), block=False, warm=False)
    english = serve(Service(app=make_app(ui_language="en")), host="127.0.0.1", port=free_port(), block=False,
                    warm=False)
    upload = write(tmp_path / "up", "报销制度.md", "# 报销制度\n\n差旅报销需在出差结束后三十天内提交发票。\n")
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    try:
        page = open_page(context, server.local_url)
        page.get_by_role("tab", name="文档").click()
        create_kb(page, "财务/../x", "不能含有 /")
        create_kb(page, "财务", "已创建知识库 财务")
        page.wait_for_function("() => document.querySelector('#askany-upload-kb input').value === '财务'",
                               timeout=10000)  # the new kb is the upload target

        with page.expect_response(lambda r: "/gradio_api/upload" in r.url, timeout=60000):
            page.set_input_files("#askany-files input[type=file]", [str(upload)])
        says(page, "askany-files", "报销制度")
        page.get_by_role("button", name="上传并导入").click()
        says(page, "askany-upload-progress", "导入完成")
        assert "新增 1" in page.inner_text("#askany-upload-progress")
        assert [d["kb"] for d in service.list_documents() if d["source"].endswith("报销制度.md")] == ["财务"]

        page.get_by_role("tab", name="问答").click()
        choose(page, "askany-kbs", "财务")
        ask(page, "差旅报销多久内提交？", 1)
        sources = page.inner_text("#askany-sources")
        assert "报销制度.md" in sources and "员工手册.md" not in sources  # asked in that kb only

        page.get_by_role("tab", name="文档").click()
        choose(page, "askany-kb-pick", "财务")
        page.click("#askany-kb-delete")
        page.locator("#askany-kb-confirm").wait_for(state="visible", timeout=10000)
        says(page, "askany-kb-status", "1 个文档")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "kb-zh-confirm.png"), full_page=True)
        box(page, "askany-kb-confirm-text").fill("财")
        page.click("#askany-kb-confirm-go")
        says(page, "askany-kb-status", "不一致")
        assert "财务" in service.kb_names()
        box(page, "askany-kb-confirm-text").fill("财务")
        page.click("#askany-kb-confirm-go")
        says(page, "askany-kb-status", "已删除知识库 财务：1 个文档")
        page.locator("#askany-kb-confirm").wait_for(state="hidden", timeout=10000)
        assert service.kb_names() == ["hr"] and not list((tmp_path / "uploads").rglob("报销制度.md"))
        box(page, "askany-kb-pick").click()
        page.get_by_role("option", name="hr", exact=True).wait_for(timeout=10000)
        assert page.get_by_role("option", name="财务", exact=True).count() == 0  # the lists were refreshed
        page.keyboard.press("Escape")

        page = open_page(context, english.local_url)
        page.get_by_role("tab", name="Documents").click()
        create_kb(page, "a\u202eb", "invisible")
        page.screenshot(path=str(SCREENSHOTS / "kb-en-bad-name.png"), full_page=True)
    finally:
        context.close()
        server.close()
        english.close()
    assert all((SCREENSHOTS / name).stat().st_size > 10_000 for name in ("kb-zh-confirm.png", "kb-en-bad-name.png"))
