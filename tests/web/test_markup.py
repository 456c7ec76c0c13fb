"""Answers as Markdown rendered to sanitized HTML (askany/web/markup.py): structure kept, markup inert."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from askany.web.markup import markdown_html, plain_html, sanitize

RICH = """重启步骤：

1. 先检查 "健康" 状态 & 日志
2. 再重启

| 步骤 | 命令 |
|---|--:|
| 重启 | `kubectl rollout restart deploy/web` |

```bash
kubectl rollout restart deploy/web -n 'prod' && echo "<done>"
```

It's done [1]."""


def test_lists_tables_code_and_quotes_render_as_such() -> None:
    out = markdown_html(RICH, turn=1, known=[1], copy_label="复制")
    assert "<ol>" in out and out.count("<li>") == 2
    assert "<table>" in out and "<th>步骤</th>" in out and 'style="text-align:right"' in out
    assert "<code>kubectl rollout restart deploy/web</code>" in out
    assert '<pre><code>kubectl rollout restart deploy/web -n \'prod\' &amp;&amp; echo "&lt;done&gt;"' in out
    assert 'class="askany-copy"' in out and "复制" in out and "bash" in out
    assert "It's done" in out and '"健康"' in out and "&amp; 日志" in out  # quotes as themselves, & escaped once
    assert "&#x27;" not in out and "\\" not in out
    assert 'href="#askany-t1-s1"' in out


@pytest.mark.parametrize("hostile", [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](vbscript:msgbox(1))",
    "[d](data:text/html;base64,PHNjcmlwdD4=)",
    "![tracker](http://example.com/t.png)",
    "![tracker](//example.com/t.png)",
    '<a href="http://example.com" onclick="alert(1)">x</a>',
    "<iframe src=http://example.com></iframe>",
    '<svg onload="alert(1)">',
    "<style>body{background:url(http://example.com/x)}</style>",
    "[x](http://example.com \"t\" onmouseover=alert(1))",
    "<form action=http://example.com><button>go</button></form>",
])
def test_hostile_markup_stays_inert(hostile: str) -> None:
    elements = parsed_elements(markdown_html(f"前文 {hostile} 后文"))
    assert {tag for tag, _ in elements} <= {"div", "p", "a", "span"}, elements
    for tag, attrs in elements:
        assert not any(name.startswith("on") or name in ("src", "style", "action") for name in attrs), (tag, attrs)
        href = attrs.get("href") or ""
        assert not href or href.startswith(("http://", "https://", "#")), href


def parsed_elements(markup: str) -> list[tuple[str, dict[str, str | None]]]:
    """Every element of `markup` as the browser's parser would see it: (tag, attributes)."""
    found: list[tuple[str, dict[str, str | None]]] = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, dict(attrs)))

    Collector().feed(markup)
    return found


def test_sanitize_is_an_allow_list() -> None:
    assert sanitize('<p onclick="x()" class="evil">a</p><img src="http://e/x.png">') == "<p>a</p>"
    assert sanitize('<a href="javascript:alert(1)">x</a>') == '<a rel="noopener noreferrer nofollow">x</a>'
    assert 'style="text-align:right"' in sanitize('<table><tr><td style="text-align:right;background:url(x)">1</td></tr></table>')


def test_entities_and_plain_text_show_as_themselves() -> None:
    assert "&amp;lt;b&amp;gt;" in markdown_html("&lt;b&gt;")  # shown as "&lt;b&gt;", not as a tag
    assert plain_html("a < b & 'c'\nd") == "a &lt; b &amp; 'c'<br>d"
