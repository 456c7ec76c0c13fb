"""Model output (and document text quoted in it) as safe HTML: Markdown rendered, then sanitized.

markdown-it-py renders CommonMark with GFM tables and strikethrough, with raw HTML off (a
``<script>`` or ``<img onerror>`` written by a model or quoted from a document shows as text) and
entities off (``&lt;`` shows as itself). Links keep only http(s) and mailto targets (markdown-it
already refuses ``javascript:``, ``vbscript:``, ``file:`` and ``data:``); images are never loaded:
``![alt](url)`` shows its alt text. Code blocks get a copy button (static/page.js copies them).
Citations [n] of known sources become links to their source cards. The result then passes nh3
(ammonia) with an allow list of tags, attributes, classes and URL schemes, so even a bug in the
rendering above cannot put an event handler, a script or a remote resource on the page.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

from askany.core.text import CITATION

SAFE_SCHEMES = {"http", "https", "mailto"}
TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del", "code", "pre",
        "blockquote", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "a", "span", "div", "button"}
ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"style"}, "td": {"style"},
              "span": {"title"}, "button": {"type", "title"}}
CLASSES = {"a": {"askany-cite"}, "code": {"askany-lang"}, "div": {"askany-code", "askany-code-head", "askany-md"},
           "span": {"askany-image", "askany-code-lang"}, "button": {"askany-copy"}}
CiteLink = Callable[[int], str]  # the anchor of a source's card


def source_anchor(turn: int, number: int) -> str:
    return f"askany-t{turn}-s{number}"


def cite_html(turn: int, number: int) -> str:
    return f'<a href="#{source_anchor(turn, number)}" class="askany-cite">[{number}]</a>'


def _link_citations(state: StateCore) -> None:
    """Split text tokens at citations [n] / 【n】 of known sources into links (never inside code)."""
    turn, known = state.env.get("turn"), state.env.get("known") or set()
    if turn is None:
        return
    for block in state.tokens:
        if block.type != "inline" or not block.children:
            continue
        children: list[Token] = []
        link_depth = 0
        for token in block.children:
            link_depth += token.type == "link_open"
            link_depth -= token.type == "link_close"
            if token.type != "text" or link_depth or not CITATION.search(token.content):
                children.append(token)
                continue
            position = 0
            for match in CITATION.finditer(token.content):
                numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
                if not numbers or not all(n in known for n in numbers):
                    continue
                children.append(_text(token.content[position:match.start()]))
                html_token = Token("html_inline", "", 0)
                html_token.content = "".join(cite_html(turn, n) for n in numbers)
                children.append(html_token)
                position = match.end()
            children.append(_text(token.content[position:]))
        block.children = children


def _text(content: str) -> Token:
    token = Token("text", "", 0)
    token.content = content
    return token


def _render_image(self: Any, tokens: list[Token], idx: int, options: Any, env: dict) -> str:
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env) or "image"
    return f'<span class="askany-image" title="{html.escape(token.attrGet("src") or "")}">🖼 {html.escape(alt)}</span>'


def _render_link_open(self: Any, tokens: list[Token], idx: int, options: Any, env: dict) -> str:
    href = str(tokens[idx].attrGet("href") or "")
    scheme = href.split(":", 1)[0].lower() if ":" in href else ""
    if scheme not in SAFE_SCHEMES:
        tokens[idx].attrs.pop("href", None)
        return "<span>"
    return self.renderToken(tokens, idx, options, env)


def _render_link_close(self: Any, tokens: list[Token], idx: int, options: Any, env: dict) -> str:
    opening = next((t for t in reversed(tokens[:idx]) if t.type == "link_open" and t.level == tokens[idx].level), None)
    if opening is not None and not opening.attrGet("href"):
        return "</span>"
    return "</a>"


def _render_code(self: Any, tokens: list[Token], idx: int, options: Any, env: dict) -> str:
    token = tokens[idx]
    language = (token.info or "").strip().split(" ", 1)[0]
    label = html.escape(env.get("copy_label", "Copy"))
    head = f'<span class="askany-code-lang">{html.escape(language)}</span>' if language else "<span></span>"
    return (f'<div class="askany-code"><div class="askany-code-head">{head}'
            f'<button type="button" class="askany-copy" title="{label}">{label}</button></div>'
            f"<pre><code>{html.escape(token.content, quote=False)}</code></pre></div>\n")


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False, "breaks": True})
    md.enable(["table", "strikethrough"])
    md.disable(["entity"])  # "&lt;" from a model shows as "&lt;", "&" always as "&"
    md.core.ruler.push("askany_citations", _link_citations)
    md.add_render_rule("image", _render_image)
    md.add_render_rule("link_open", _render_link_open)
    md.add_render_rule("link_close", _render_link_close)
    md.add_render_rule("fence", _render_code)
    md.add_render_rule("code_block", _render_code)
    return md


def sanitize(markup: str) -> str:
    """Only the allow-listed tags, attributes, classes and URL schemes of `markup` survive."""
    return nh3.clean(markup, tags=TAGS, attributes=ATTRIBUTES, allowed_classes=CLASSES,
                     url_schemes=SAFE_SCHEMES, link_rel="noopener noreferrer nofollow",
                     filter_style_properties={"text-align"}, strip_comments=True)


def markdown_html(text: str, *, turn: int | None = None, known: Iterable[int] = (),
                  copy_label: str = "Copy") -> str:
    """`text` (Markdown from a model, or document text) as sanitized HTML; citations [n] of the
    `known` source numbers link to the cards of `turn`."""
    env = {"turn": turn, "known": set(known), "copy_label": copy_label}
    return sanitize(f'<div class="askany-md">{_parser().render(text or "", env)}</div>')


def plain_html(text: str) -> str:
    """Text shown as it is (a question, thinking): escaped, line breaks kept."""
    return html.escape(text or "", quote=False).replace("\n", "<br>")
