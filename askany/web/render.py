"""Pure rendering: the service's results as the page's HTML. No Gradio, no I/O.

Every piece of document text, file name or notice goes through `html.escape` before it reaches
the page, and answers are Markdown rendered to sanitized HTML (markup.py); the only markup is
produced here, so a document or an answer holding ``<script>``, ``onerror=`` or a remote image
shows as text and never runs or loads. The chat shows these messages as HTML (its own Markdown
rendering is off), with the page's sanitizer behind ours.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from askany.service import QAResult, Source, Turn
from askany.service.service import PassageContext
from askany.service.status import remote_summary, runtime_summary
from askany.web.i18n import answer_notices, strings
from askany.web.markup import markdown_html, plain_html, source_anchor

STAGE_ORDER = ("embed", "keyword", "vector", "rerank", "load", "first_token", "generate", "extract", "total")
SCORE_STAGES = ("keyword", "vector", "fused", "rerank")
SOURCE_TURNS_SHOWN = 5  # earlier turns whose sources stay (collapsed) in the sources panel


@dataclass
class PageTurn(Turn):
    """A conversation turn plus the HTML of its source cards, which the sources panel keeps showing
    (collapsed) for a few turns; the conversation rules themselves only need the `Turn` part."""

    sources_html: str = ""
    message_start: int = 0  # index of its question in the chat's messages
    answer_index: int = -1  # index of its answer message (the one 👍/👎 rate)
    sources: list[dict[str, Any]] = field(default_factory=list)  # what feedback records
    options: dict[str, Any] = field(default_factory=dict)  # the settings it was asked with
    feedback_id: int | None = None


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>$])")


def escape_markdown(text: str) -> str:
    """Markdown-inert text for the page's own gr.Markdown labels: tags show as text, ``![x](url)``
    cannot fetch an image; quotes are left alone (an escaped ``&#x27;`` would show its ``#`` escaped)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def answer_markdown(text: str, turn: int, known: Iterable[int], language: str = "zh") -> str:
    """An answer for the chat: Markdown as sanitized HTML, each citation [n] of a known source linked
    to its card (citations inside code stay code)."""
    return markdown_html(text, turn=turn, known=known, copy_label=strings(language)["copy"])


def highlight(text: str, terms: Iterable[str]) -> str:
    """Escaped HTML of `text` with every occurrence of `terms` wrapped in <mark>.

    Matches are found on the raw text and each piece is escaped on its own, so
    a term can never split an HTML entity or inject markup.
    """
    ordered = sorted({t for t in terms if t}, key=len, reverse=True)
    if not ordered:
        return html.escape(text)
    pattern = re.compile("|".join(re.escape(t) for t in ordered), re.IGNORECASE)
    out: list[str] = []
    position = 0
    for match in pattern.finditer(text):
        out.append(html.escape(text[position:match.start()]))
        out.append(f"<mark>{html.escape(match.group(0))}</mark>")
        position = match.end()
    out.append(html.escape(text[position:]))
    return "".join(out)


def format_seconds(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def render_timings(timings: dict[str, float], language: str = "zh") -> str:
    """One line of stage times in a fixed order: '关键词检索 3 ms · 重排 40 ms · … · 总计 1.20 s'."""
    t = strings(language)
    names = [n for n in STAGE_ORDER if n in timings] + sorted(n for n in timings if n not in STAGE_ORDER)
    return " · ".join(f"{t.get('stage_' + n, n)} {format_seconds(timings[n])}" for n in names)


def render_scores(stages: dict[str, dict[str, float]], language: str = "zh") -> str:
    t = strings(language)
    names = [n for n in SCORE_STAGES if n in stages] + sorted(n for n in stages if n not in SCORE_STAGES)
    parts = []
    for name in names:
        stage = stages[name]
        parts.append(f"{t.get('stage_' + name, name)} #{int(stage.get('rank', 0))} · {stage.get('score', 0.0):.3g}")
    return html.escape(" | ".join(parts))


def render_source(source: Source, turn: int, cited: bool, terms: Sequence[str], language: str = "zh") -> str:
    """One source card: file name, heading path, badges, the highlighted passage, stage scores."""
    t = strings(language)
    name = Path(source.source).name or source.title or source.source
    where = " › ".join(h for h in source.heading_path if h.strip()) or source.title
    where = " · ".join(part for part in [where, *(t[f"location_{kind}"].format(n=n)
                                                  for kind, n in source.location.items())] if part)
    badges = []
    if cited:
        badges.append(f'<span class="askany-badge askany-badge-cited">{html.escape(t["cited"])}</span>')
    if source.is_faq:
        badges.append(f'<span class="askany-badge">{html.escape(t["faq"])}</span>')
    if source.low_confidence:
        badges.append(f'<span class="askany-badge askany-badge-low">{html.escape(t["low"])}</span>')
    classes = "askany-source askany-source-cited" if cited else "askany-source"
    chunk = f' data-chunk="{int(source.chunk_id)}"' if source.chunk_id is not None else ""
    opener = (f'<button type="button" class="askany-open">{html.escape(t["view_source"])}</button>'
              if chunk else "")
    return (
        f'<div class="{classes}" id="{source_anchor(turn, source.number)}"{chunk}>'
        f'<div class="askany-source-head"><span class="askany-num">[{source.number}]</span> '
        f'<span class="askany-file" title="{html.escape(source.source)}">{html.escape(name)}</span> '
        f'{"".join(badges)}{opener}</div>'
        + (f'<div class="askany-where">{html.escape(where)}</div>' if where else "")
        + f'<div class="askany-passage">{highlight(source.text, terms)}</div>'
        f'<div class="askany-scores">{html.escape(t["kb"])} {html.escape(source.kb)} | '
        f'{render_scores(source.stages, language)}</div></div>')


def render_sources(result: QAResult, turn: int, terms: Sequence[str], language: str = "zh") -> str:
    """All sources of one answer, cited ones marked; empty string when there are none."""
    cited = set(result.answer.citations)
    return "".join(render_source(s, turn, s.number in cited, terms, language) for s in result.sources)


def sources_panel(turns: Sequence[PageTurn], language: str = "zh") -> str:
    """The latest turn's sources open, a few earlier turns' collapsed below them."""
    t = strings(language)
    if not turns:
        return f'<div class="askany-sources-empty">{html.escape(t["sources_empty"])}</div>'
    latest = turns[-1].sources_html or '<div class="askany-sources-empty">—</div>'
    earlier = []
    first = max(0, len(turns) - 1 - SOURCE_TURNS_SHOWN)
    for index in range(len(turns) - 2, first - 1, -1):
        turn = turns[index]
        if turn.sources_html:
            label = t["earlier"].format(n=index + 1, q=turn.question[:40])
            earlier.append(f'<details class="askany-earlier"><summary>{html.escape(label)}</summary>'
                           f"{turn.sources_html}</details>")
    return f'<div class="askany-sources">{latest}{"".join(earlier)}</div>'


def final_answer_markdown(result: QAResult, turn: int, language: str = "zh") -> str:
    """The finished answer message: escaped text with linked citations, kind, notices and stage times."""
    t = strings(language)
    numbers = [s.number for s in result.sources]
    parts = [answer_markdown(result.answer.text, turn, numbers, language)]
    kind_label = {"extracted": t["kind_extracted"], "faq": t["kind_faq"]}.get(result.answer.kind)
    if kind_label:
        parts.append(f'<span class="askany-kind">{html.escape(kind_label)}</span>')
    parts += [notice_html(notice) for notice in answer_notices(result, language)]
    parts.append(f'<div class="askany-timings">{html.escape(t["timings"] + render_timings(result.timings, language))}'
                 "</div>")
    return "\n".join(parts)


def stopped_answer_html(text: str, turn: int, language: str = "zh") -> str:
    """An answer stopped before the model handed anything back: what was written, and a note."""
    t = strings(language)
    return "\n".join([answer_markdown(text, turn, (), language) if text else "",
                      notice_html(t["notice_stopped"])])


def source_record(source: Source, cited: bool) -> dict[str, Any]:
    """What a conversation keeps of a source (for feedback, the source viewer): no passage text."""
    return {"number": source.number, "source": source.source, "kb": source.kb, "title": source.title,
            "heading_path": list(source.heading_path), "location": dict(source.location),
            "chunk_id": source.chunk_id, "cited": cited, "is_faq": source.is_faq}


def notice_html(text: str) -> str:
    """A notice as one HTML block of the chat's Markdown: escaped, and on one line, because a blank
    line would end the block and let Markdown loose on the rest."""
    return f'<div class="askany-answer-notice">⚠ {html.escape(" ".join(text.split()))}</div>'


def render_viewer(context: PassageContext, language: str = "zh") -> str:
    """A passage in its document: the neighbouring chunks (or the whole text), the matched one marked,
    with the document's name, the heading path and the page; every piece of text escaped."""
    t = strings(language)
    hit = context.chunk
    where = " › ".join(h for h in hit.heading_path if h.strip())
    location = " · ".join(t[f"location_{kind}"].format(n=hit.metadata[kind]) for kind in ("page", "slide")
                          if kind in hit.metadata)
    head = " · ".join(part for part in [where, location] if part)
    if context.whole:
        scope = t["viewer_whole"].format(shown=len(context.chunks), total=context.total)
    else:
        scope = t["viewer_context"].format(n=hit.position + 1, total=context.total)
    body = []
    for chunk, text in context.pieces():
        classes = "askany-ctx askany-ctx-hit" if chunk.id == hit.id else "askany-ctx"
        page = chunk.metadata.get("page")
        title = f' title="{html.escape(t["location_page"].format(n=page))}"' if page is not None else ""
        body.append(f'<span class="{classes}"{title}>{html.escape(text)}</span>')
    return (f'<div class="askany-viewer" data-chunk="{int(hit.id)}">'
            f'<div class="askany-viewer-head"><span class="askany-file">{html.escape(Path(hit.source).name)}</span>'
            f' <span class="askany-where">{html.escape(head)}</span></div>'
            f'<div class="askany-where">{html.escape(t["kb"])} {html.escape(hit.kb)} · {html.escape(scope)}</div>'
            f'<div class="askany-viewer-text">{"".join(body)}</div></div>')


def render_progress(done: int, total: int, current: str, message: str, language: str = "zh") -> str:
    """A background upload's progress: a bar (files done of total), the file in work, a line of text."""
    t = strings(language)
    share = 100 * done / total if total else 100
    working = (f'<div class="askany-where">{html.escape(t["upload_current"].format(name=current))}</div>'
               if current else "")
    return (f'<div class="askany-progress" role="progressbar" aria-valuemin="0" aria-valuemax="{total}" '
            f'aria-valuenow="{done}"><div class="askany-progress-bar" style="width:{share:.1f}%"></div></div>'
            f'<div class="askany-progress-text">{html.escape(message)}</div>{working}')


def render_banner(notices: Sequence[str]) -> str:
    if not notices:
        return ""
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notices)
    return f'<div class="askany-banner" role="status"><ul>{items}</ul></div>'


def render_status(status: dict[str, Any], loaded: dict[str, bool], language: str = "zh") -> str:
    """The --check report as an HTML table: settings file, database, each model role, tokenizer, device.

    `status["ok"]` already includes the required model roles (see `askany.service.status.required_roles`).
    """
    t = strings(language)
    rows: list[tuple[str, str, str]] = []
    where = status.get("settings") or {}
    if where:
        rows.append(("info", t["settings"], f".env: {where.get('env_file') or '-'}; environment: "
                                            f"{', '.join(where.get('from_environment') or []) or '-'}"))
    db = status.get("database", {})
    if db.get("ok"):
        kind = "embedded" if db.get("embedded") else "external"
        rows.append(("ok", t["db"], f"{kind}, {db.get('where')}: PostgreSQL {db.get('server_version')}, "
                                    f"pgvector {db.get('pgvector')}, {db.get('chunks')} chunks"))
    elif db.get("ok") is None:
        rows.append(("info", t["db"], "not probed"))
    else:
        rows.append(("bad", t["db"], str(db.get("error"))))
    for role, state in status.get("models", {}).items():
        label = t.get(f"role_{role}", role)
        if not state.get("required") and not state.get("name"):
            rows.append(("info", label, t["not_configured"]))
        elif state.get("ok") and state.get("remote"):
            rows.append(("ok", label, remote_summary(state)))
        elif state.get("ok"):
            how = t["loaded"] if loaded.get(role) else t["available"]
            rows.append(("ok", label, f"{how}: {state.get('name')} → {state.get('path')} ({state.get('source')})"
                                      f"{runtime_summary(state)}"))
        else:
            rows.append(("bad", label, f"{t['unavailable']}: {state.get('problem')}"))
    ocr = status.get("ocr") or {}
    rows.append(("ok", t["ocr"], str(ocr.get("engine"))) if ocr.get("ok")
                else ("info", t["ocr"], f"{t['ocr_off']}: {ocr.get('problem')}"))
    rows.append(("info", t["tokenizer"], str(status.get("tokenizer"))))
    rows.append(("info" if "error" not in str(status.get("device")) else "bad", t["device"],
                 str(status.get("device"))))
    marks = {"ok": "✓", "bad": "✗", "info": "·"}
    body = "".join(f'<tr class="askany-{state}"><td>{marks[state]}</td><td>{html.escape(name)}</td>'
                   f"<td>{html.escape(detail)}</td></tr>" for state, name, detail in rows)
    summary = t["all_ok"] if status.get("ok") else t["some_missing"]
    return (f'<table class="askany-status"><tbody>{body}</tbody></table>'
            f'<p class="askany-status-summary">{html.escape(summary)}</p>')


# --------------------------------------------------------------------------- chat messages


def user_message(question: str) -> dict[str, Any]:
    return {"role": "user", "content": plain_html(question)}


def thinking_message(text: str, language: str, done: bool, seconds: float | None = None) -> dict[str, Any]:
    """A collapsed "思考过程" block: Gradio shows messages with a metadata title as a closed accordion."""
    t = strings(language)
    metadata: dict[str, Any] = {"title": t["thinking_title"], "status": "done"}
    if not done:
        metadata["log"] = t["thinking_live"]
    elif seconds is not None:
        metadata["duration"] = round(seconds, 2)
    return {"role": "assistant", "content": plain_html(text), "metadata": metadata}


def answer_message(content: str) -> dict[str, Any]:
    return {"role": "assistant", "content": content}
