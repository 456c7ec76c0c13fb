"""The chat page in a real browser: Debian's headless Chromium driven by Playwright (never a downloaded one).

One visit checks what only a browser can: the answer streams in, thinking sits in
a collapsed block, citations link to their source cards, a document holding
``<script>`` or ``onerror=`` runs nothing, and every request goes to the local
server (no fonts, scripts or analytics from the internet). A screenshot is
saved in the test's temporary folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from askany.ingestion.pipeline import Ingestor
from askany.service import Service
from askany.web import serve
from tests.web.test_page import INJECTION_DOC, LEAVE_DOC, ScriptedGenerator, free_port, scripted_qa, write

pytestmark = pytest.mark.slow  # a real browser: tens of seconds
REPLY = "<think>先在资料里找年假的规定。</think>员工每年可以享受十五天带薪年假[1]，工作满十年以后增加到二十天[1]。"


@pytest.mark.usefixtures("empty_db")
def test_page_streams_cites_escapes_and_stays_local(chromium, make_app, tmp_path: Path) -> None:
    app = make_app(llm_backend="transformers")
    docs = tmp_path / "docs"
    Ingestor(app).run([write(docs, "员工手册.md", LEAVE_DOC), write(docs, "安全须知.md", INJECTION_DOC)],
                      kb="hr", progress=False)
    blocks = serve(Service(qa=scripted_qa(app, ScriptedGenerator(REPLY, delay=0.08))), host="127.0.0.1",
                         port=free_port(), block=False, warm=False)
    url = blocks.local_url
    origin = url.rstrip("/")
    requests: list[str] = []
    screenshot = tmp_path / "askany-chat.png"

    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    try:
        page = context.new_page()
        page.on("request", lambda request: requests.append(request.url))
        page.goto(url)
        page.wait_for_selector("#askany-question textarea", timeout=15000)

        page.fill("#askany-question textarea", "员工每年有几天年假？")
        page.click("#askany-send")
        # Streamed: part of the answer is on the page before the finished answer (with its timings) is.
        page.wait_for_function(
            "() => document.querySelector('#askany-chat').innerText.includes('员工每年')"
            " && !document.querySelector('#askany-chat .askany-timings')", timeout=15000)
        page.wait_for_selector("#askany-chat .askany-timings", timeout=15000)
        chat = page.inner_text("#askany-chat")
        assert "员工每年可以享受十五天带薪年假" in chat and "总计" in chat
        assert page.get_by_text("思考过程").first.is_visible()
        assert not page.get_by_text("先在资料里找年假的规定").first.is_visible()  # collapsed

        citation = page.locator("#askany-chat a.askany-cite").first
        assert citation.get_attribute("href") == "#askany-t1-s1"
        card = page.locator("#askany-t1-s1")
        assert "员工手册.md" in card.inner_text() and card.locator("mark").count() > 0
        citation.click()
        page.wait_for_function("() => document.getElementById('askany-t1-s1')"
                               ".classList.contains('askany-flash')", timeout=5000)
        assert page.url.rstrip("/") == origin  # the link scrolled the panel, it did not navigate

        page.fill("#askany-question textarea", "门禁卡丢失后怎么挂失？")
        page.click("#askany-send")
        page.wait_for_function(
            "() => document.querySelectorAll('#askany-chat .askany-timings').length === 2", timeout=15000)
        sources = page.inner_text("#askany-sources")
        assert "<script>window.__pwned=1</script>" in sources  # shown as text ...
        assert '<img src=x onerror="window.__pwned=2">' in sources
        assert page.evaluate("typeof window.__pwned") == "undefined"  # ... and never run
        assert page.locator("#askany-sources script, #askany-chat script").count() == 0
        assert page.locator("#askany-sources img, #askany-chat img[src='x']").count() == 0

        page.screenshot(path=str(screenshot), full_page=True)
    finally:
        context.close()
        blocks.close()

    assert screenshot.stat().st_size > 10_000
    outside = [request for request in requests if not request.startswith(origin + "/")]
    assert requests and not outside, outside
