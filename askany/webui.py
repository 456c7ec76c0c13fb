"""The Gradio chat page: ask with citations and sources, upload and delete documents, see model status.

Layout of this module: pure helpers first (upload names, follow-up questions,
escaping and rendering, translated strings), then `WebUI`, whose methods are the
Gradio event handlers, then the wiring (`build_app`) and the launcher (`serve`).

Safety rules kept throughout:
- every piece of document text, file name, answer or notice goes through
  `html.escape` (and, inside the chat, Markdown escaping) before it reaches the
  page; the only markup is produced here, so a document holding ``<script>`` or
  ``onerror=`` shows as text and never runs;
- nothing is fetched from the internet: analytics off, a theme with system
  fonts only, no CDN scripts, and escaped Markdown so a document cannot embed a
  remote image;
- a conversation lives in Gradio session state (`gr.State`), never in module
  globals, so two users never see each other's turns.
"""

from __future__ import annotations

import html
import logging
import os
import queue
import re
import shutil
import threading
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Gradio and huggingface_hub read these at import time: set them before importing gradio.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402

from askany.check import collect_status  # noqa: E402
from askany.context import AskAny  # noqa: E402
from askany.errors import AskAnyError  # noqa: E402
from askany.ingestion import FileResult, Ingestor  # noqa: E402
from askany.keywords import STOPWORDS, WORD_PREFIX  # noqa: E402
from askany.models import ROLES, role_status  # noqa: E402
from askany.qa import QA, QUERY_TYPES, QAResult, Source  # noqa: E402

log = logging.getLogger(__name__)

HISTORY_TURNS = 3  # earlier turns passed to the model
HISTORY_CHARS = 1500  # their total size, so they never crowd the passages out of the context window
HISTORY_ANSWER_CHARS = 500
SHORT_FOLLOW_UP_CHARS = 12
FOLLOW_UP_PREFIXES = ("那", "这", "它", "还有", "然后", "另外", "此外", "其", "该", "上述",
                      "and ", "what about", "how about", "then ")
SOURCE_TURNS_SHOWN = 5  # earlier turns whose sources stay (collapsed) in the sources panel
MAX_NAME_BYTES = 200
STREAM_INTERVAL = 0.05  # seconds between streamed updates: enough for the eye, light on the socket
FONT_STACK = ["WenQuanYi Micro Hei", "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", "system-ui",
              "sans-serif"]
MONO_STACK = ["ui-monospace", "Consolas", "monospace"]

# --------------------------------------------------------------------------- translated strings

STRINGS: dict[str, dict[str, str]] = {
    "zh": {
        "title": "AskAny 文档问答",
        "subtitle": "离线问答：答案来自你的文档，并注明出处。",
        "tab_chat": "问答", "tab_docs": "文档", "tab_status": "状态",
        "chat": "对话", "question": "问题", "placeholder": "输入问题，回车发送（可用 @标签 过滤）",
        "send": "发送", "clear": "清空对话", "sources": "资料来源",
        "sources_empty": "提问后，这里会显示答案引用的资料。",
        "query_type": "问题类型", "qt_auto": "自动", "qt_faq": "常见问题", "qt_docs": "文档",
        "kbs": "知识库", "tags": "标签", "top_k": "资料条数 (top-k)", "rerank": "重排", "thinking": "思考模式",
        "thinking_title": "思考过程", "thinking_live": "思考中…",
        "answer_pending": "正在检索资料…",
        "kind_extracted": "（摘录自资料，未经大模型生成）", "kind_faq": "（来自常见问题库）",
        "error": "无法回答：", "timings": "耗时：",
        "cited": "已引用", "faq": "FAQ", "low": "匹配度较低", "kb": "知识库",
        "earlier": "第 {n} 轮：{q}",
        "upload_title": "上传文档", "upload_files": "选择文件（可多选）", "upload_kb": "导入到知识库",
        "upload_tags": "标签（逗号分隔，可留空）", "upload_button": "上传并导入",
        "upload_none": "请先选择要上传的文件。",
        "upload_progress": "正在导入：已完成 {done}/{total} 个文件…",
        "upload_done": "导入完成：新增 {new}，更新 {changed}，未变化 {unchanged}，失败 {failed}，跳过 {skipped}。",
        "upload_too_big": "文件大于上传限制 {mb:g} MB（设置 UPLOAD_MAX_MB）",
        "upload_bad_name": "文件名无效",
        "upload_results": "导入结果",
        "col_file": "文件", "col_status": "状态", "col_chunks": "片段数", "col_reason": "原因",
        "col_kb": "知识库", "col_docs": "文档数", "col_faq": "FAQ 文件", "col_tags": "标签",
        "col_time": "导入时间", "col_path": "路径",
        "status_new": "新增", "status_changed": "已更新", "status_unchanged": "未变化", "status_failed": "失败",
        "status_skipped": "跳过", "status_removed": "已移除",
        "docs_title": "已导入的文档", "docs_kb": "查看知识库", "docs_all": "（全部）", "kb_summary": "知识库概览",
        "doc_list": "文档列表", "doc_pick": "要删除的文档", "delete": "删除文档", "refresh": "刷新",
        "deleted": "已从知识库 {kb} 删除 {name}。", "not_found": "知识库 {kb} 中没有文档 {name}。",
        "pick_doc": "请先选择知识库和要删除的文档。",
        "status_title": "组件状态（与 --check 相同）", "db": "数据库", "models": "模型", "settings": "设置",
        "loaded": "已加载", "available": "可用（首次使用时加载）", "unavailable": "不可用",
        "not_configured": "未配置，使用 jieba 分词", "tokenizer": "分词", "device": "设备",
        "role_embedding": "向量模型", "role_reranker": "重排模型", "role_llm": "大模型",
        "role_hanlp": "HanLP 分词",
        "all_ok": "所需组件均已就绪。", "some_missing": "有必需的组件缺失，修复方法见上。",
        "off_llm": "未加载大模型，显示的是从资料中摘录的答案：",
        "off_llm_none": "未启用大模型（LLM_BACKEND=none），显示的是从资料中摘录的答案。开启方法：设置 "
                        "LLM_BACKEND=transformers 并下载模型：python -m askany.main --download-models llm",
        "off_reranker": "未加载重排模型，资料按融合排序显示：",
        "off_reranker_disabled": "重排已关闭（RERANKER_ENABLED=false）；开启方法：设置 RERANKER_ENABLED=true。",
        "off_embedding": "未加载向量模型，只用关键词检索：",
        "off_embedding_disabled": "向量检索已关闭（EMBEDDING_ENABLED=false）；开启方法：设置 EMBEDDING_ENABLED=true。",
        "notice": "提示：",
        "brief_reranker": "未加载重排模型，资料按融合排序显示（开启方法见页面顶部或“状态”页）。",
        "brief_embedding": "未加载向量模型，只用关键词检索（开启方法见页面顶部或“状态”页）。",
        "stage_embed": "向量化", "stage_keyword": "关键词检索", "stage_vector": "向量检索",
        "stage_fused": "融合", "stage_rerank": "重排", "stage_load": "加载模型", "stage_first_token": "首字",
        "stage_generate": "生成", "stage_extract": "摘录", "stage_total": "总计",
    },
    "en": {
        "title": "AskAny document Q&A",
        "subtitle": "Offline question answering: answers come from your documents, with citations.",
        "tab_chat": "Chat", "tab_docs": "Documents", "tab_status": "Status",
        "chat": "Conversation", "question": "Question",
        "placeholder": "Ask a question, Enter to send (@tag filters)",
        "send": "Send", "clear": "Clear chat", "sources": "Sources",
        "sources_empty": "The passages behind the answer appear here after you ask.",
        "query_type": "Query type", "qt_auto": "Auto", "qt_faq": "FAQ", "qt_docs": "Documents",
        "kbs": "Knowledge bases", "tags": "Tags", "top_k": "Passages (top-k)", "rerank": "Rerank",
        "thinking": "Thinking", "thinking_title": "Thinking", "thinking_live": "thinking…",
        "answer_pending": "Searching the documents…",
        "kind_extracted": "(extracted from the documents, not written by a language model)",
        "kind_faq": "(from the FAQ)", "error": "Cannot answer: ", "timings": "Time: ",
        "cited": "cited", "faq": "FAQ", "low": "weak match", "kb": "KB",
        "earlier": "Turn {n}: {q}",
        "upload_title": "Upload documents", "upload_files": "Files (several allowed)",
        "upload_kb": "Knowledge base", "upload_tags": "Tags (comma-separated, optional)",
        "upload_button": "Upload and ingest", "upload_none": "Choose files to upload first.",
        "upload_progress": "Ingesting: {done}/{total} files done…",
        "upload_done": "Done: {new} new, {changed} changed, {unchanged} unchanged, {failed} failed, "
                       "{skipped} skipped.",
        "upload_too_big": "larger than the {mb:g} MB upload limit (UPLOAD_MAX_MB)",
        "upload_bad_name": "invalid file name", "upload_results": "Results",
        "col_file": "File", "col_status": "Status", "col_chunks": "Chunks", "col_reason": "Reason",
        "col_kb": "Knowledge base", "col_docs": "Documents", "col_faq": "FAQ files", "col_tags": "Tags",
        "col_time": "Ingested", "col_path": "Path",
        "status_new": "new", "status_changed": "changed", "status_unchanged": "unchanged",
        "status_failed": "failed", "status_skipped": "skipped", "status_removed": "removed",
        "docs_title": "Ingested documents", "docs_kb": "Knowledge base", "docs_all": "(all)",
        "kb_summary": "Knowledge bases", "doc_list": "Documents", "doc_pick": "Document to delete",
        "delete": "Delete document", "refresh": "Refresh",
        "deleted": "Deleted {name} from knowledge base {kb}.", "not_found": "No document {name} in {kb}.",
        "pick_doc": "Choose a knowledge base and a document first.",
        "status_title": "Components (as --check shows them)", "db": "Database", "models": "Models",
        "settings": "Settings",
        "loaded": "loaded", "available": "available (loads on first use)", "unavailable": "unavailable",
        "not_configured": "not configured, jieba is used", "tokenizer": "Tokenizer", "device": "Device",
        "role_embedding": "Embedding", "role_reranker": "Reranker", "role_llm": "LLM", "role_hanlp": "HanLP",
        "all_ok": "All required components are ready.",
        "some_missing": "Something required is missing: see above for the fix.",
        "off_llm": "No language model loaded; the answer is extracted from the documents: ",
        "off_llm_none": "No language model (LLM_BACKEND=none); answers are extracted from the documents. "
                        "To turn it on, set LLM_BACKEND=transformers and run: "
                        "python -m askany.main --download-models llm",
        "off_reranker": "No reranker loaded; passages keep the fused order: ",
        "off_reranker_disabled": "Reranking is off (RERANKER_ENABLED=false); set RERANKER_ENABLED=true.",
        "off_embedding": "No embedding model loaded; keyword search only: ",
        "off_embedding_disabled": "Vector search is off (EMBEDDING_ENABLED=false); set EMBEDDING_ENABLED=true.",
        "notice": "Note: ",
        "brief_reranker": "No reranker loaded; passages keep the fused order (see the banner or Status for the fix).",
        "brief_embedding": "No embedding model loaded; keyword search only (see the banner or Status for the fix).",
        "stage_embed": "embed", "stage_keyword": "keyword", "stage_vector": "vector", "stage_fused": "fused",
        "stage_rerank": "rerank", "stage_load": "model load", "stage_first_token": "first token",
        "stage_generate": "generate", "stage_extract": "extract", "stage_total": "total",
    },
}
STAGE_ORDER = ("embed", "keyword", "vector", "rerank", "load", "first_token", "generate", "extract", "total")
SCORE_STAGES = ("keyword", "vector", "fused", "rerank")


def strings(language: str) -> dict[str, str]:
    """The strings for a UI language, falling back to Chinese (the first language) for unknown ones."""
    return STRINGS.get(language, STRINGS["zh"])


# --------------------------------------------------------------------------- uploads


class UploadError(AskAnyError):
    """An uploaded file cannot be accepted (bad name, too large)."""


_UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, bidi/zero-width, unassigned
_RESERVED = re.compile(r'[<>:"|?*]')


def safe_upload_name(name: str) -> str:
    """A file name that stays a plain name inside the upload folder, or UploadError.

    NFKC first, so full-width ``／`` and ``．`` become ``/`` and ``.`` before the
    directory parts (POSIX or Windows) are stripped; then control, bidi and
    zero-width characters go (they make ``txt.exe`` look like ``exe.txt``),
    characters Windows forbids become ``_``, leading dots go (no hidden files, no
    ``..``). Chinese characters are kept. The name is cut to a safe byte length,
    keeping its extension.
    """
    text = unicodedata.normalize("NFKC", name or "")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(" " if ch.isspace() else ch for ch in text
                   if unicodedata.category(ch) not in _UNSAFE_CATEGORIES)
    text = _RESERVED.sub("_", text)
    text = re.sub(r" {2,}", " ", text).strip().lstrip(".").rstrip(". ")
    if not text or not any(ch.isalnum() for ch in text):
        raise UploadError(f"The file name {name!r} has no usable characters; rename the file")
    if len(text.encode("utf-8")) <= MAX_NAME_BYTES:
        return text
    stem, dot, suffix = text.rpartition(".")
    if not dot or not stem:
        stem, suffix = text, ""
    suffix = f".{suffix[:16]}" if suffix else ""
    room = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
    return stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(". ") + suffix


def upload_destination(upload_dir: Path, kb: str, name: str) -> Path:
    """Where an upload is stored: ``UPLOAD_DIR/<kb>/<safe name>``, checked to be inside UPLOAD_DIR."""
    root = upload_dir.expanduser().resolve()
    target = (root / safe_upload_name(kb) / safe_upload_name(name)).resolve()
    if not target.is_relative_to(root) or target.parent == root:
        raise UploadError(f"The file name {name!r} would leave the upload folder; rename the file")
    return target


# --------------------------------------------------------------------------- follow-up questions


@dataclass
class Turn:
    """One question and its answer, as the session remembers them."""

    question: str
    topic: str  # the standalone question this turn is about (its own, or an earlier one's for a follow-up)
    answer: str
    sources_html: str = ""


def is_follow_up(question: str) -> bool:
    """A question too short or too referring ("那第二步呢？") to be searched on its own."""
    text = question.strip()
    core = re.sub(r"[\W_]+", "", text)
    return len(core) < SHORT_FOLLOW_UP_CHARS or text.lower().startswith(FOLLOW_UP_PREFIXES)


def retrieval_query(question: str, turns: Sequence[Turn]) -> tuple[str, str]:
    """(text to search with, topic of this turn): a follow-up is searched together with its topic.

    The topic is the last standalone question, so a chain of follow-ups
    ("第二步呢？", "第三步呢？") keeps pointing at the original question instead
    of growing longer each turn.
    """
    question = question.strip()
    if turns and is_follow_up(question):
        topic = turns[-1].topic
        return f"{topic} {question}", topic
    return question, question


_CITATION = re.compile(r"[\[【]\s*(\d+(?:\s*[,，、;；]\s*\d+)*)\s*[\]】]")


def strip_citations(text: str) -> str:
    """Text without [n] markers: earlier answers' numbers refer to passages the model no longer sees."""
    return re.sub(r"[ \t]{2,}", " ", _CITATION.sub("", text)).strip()


def history_for_model(turns: Sequence[Turn], max_turns: int = HISTORY_TURNS,
                      max_chars: int = HISTORY_CHARS) -> list[dict[str, str]]:
    """The last few turns as chat messages, oldest dropped first until they fit in `max_chars`."""
    pairs: list[tuple[str, str]] = []
    for turn in turns[-max_turns:] if max_turns > 0 else []:
        answer = strip_citations(turn.answer)
        if len(answer) > HISTORY_ANSWER_CHARS:
            answer = answer[:HISTORY_ANSWER_CHARS] + "……"
        pairs.append((turn.question.strip(), answer))
    while pairs and sum(len(q) + len(a) for q, a in pairs) > max_chars:
        pairs.pop(0)
    messages: list[dict[str, str]] = []
    for question, answer in pairs:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages


# --------------------------------------------------------------------------- escaping and rendering

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>$])")


def escape_markdown(text: str) -> str:
    """HTML-escaped, Markdown-inert text: tags show as text, ``![x](url)`` cannot fetch an image."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=True))


def source_anchor(turn: int, number: int) -> str:
    return f"askany-t{turn}-s{number}"


def answer_markdown(text: str, turn: int, known: Iterable[int]) -> str:
    """An answer for the chat: escaped, with each citation [n] of a known source linked to its card."""
    known = set(known)
    parts: list[str] = []
    position = 0
    for match in _CITATION.finditer(text):
        parts.append(escape_markdown(text[position:match.start()]))
        numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        if numbers and all(n in known for n in numbers):
            parts.append("".join(f'<a href="#{source_anchor(turn, n)}" class="askany-cite">[{n}]</a>'
                                 for n in numbers))
        else:
            parts.append(escape_markdown(match.group(0)))
        position = match.end()
    parts.append(escape_markdown(text[position:]))
    return "".join(parts)


def query_terms(app: AskAny, question: str) -> list[str]:
    """Words of the question worth highlighting in a passage: the analyzer's words and bigrams.

    Single characters are left out: they would light up half of a Chinese passage.
    """
    try:
        terms = app.analyzer.terms(question)
    except Exception:  # highlighting is decoration: never fail an answer over it
        log.exception("Could not compute highlight terms")
        return []
    found = {term.removeprefix(WORD_PREFIX) for term in terms}
    return sorted((t for t in found if len(t) >= 2 and t not in STOPWORDS), key=lambda t: (-len(t), t))


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
    badges = []
    if cited:
        badges.append(f'<span class="askany-badge askany-badge-cited">{html.escape(t["cited"])}</span>')
    if source.is_faq:
        badges.append(f'<span class="askany-badge">{html.escape(t["faq"])}</span>')
    if source.low_confidence:
        badges.append(f'<span class="askany-badge askany-badge-low">{html.escape(t["low"])}</span>')
    classes = "askany-source askany-source-cited" if cited else "askany-source"
    return (
        f'<div class="{classes}" id="{source_anchor(turn, source.number)}">'
        f'<div class="askany-source-head"><span class="askany-num">[{source.number}]</span> '
        f'<span class="askany-file" title="{html.escape(source.source)}">{html.escape(name)}</span> '
        f'{"".join(badges)}</div>'
        + (f'<div class="askany-where">{html.escape(where)}</div>' if where else "")
        + f'<div class="askany-passage">{highlight(source.text, terms)}</div>'
        f'<div class="askany-scores">{html.escape(t["kb"])} {html.escape(source.kb)} | '
        f'{render_scores(source.stages, language)}</div></div>')


def render_sources(result: QAResult, turn: int, terms: Sequence[str], language: str = "zh") -> str:
    """All sources of one answer, cited ones marked; empty string when there are none."""
    cited = set(result.answer.citations)
    return "".join(render_source(s, turn, s.number in cited, terms, language) for s in result.sources)


def sources_panel(turns: Sequence[Turn], language: str = "zh") -> str:
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


# Retrieval notices from the library, by prefix: (full message key, short message key).
_NOTICE_PREFIXES = (
    ("Reranking unavailable, fused order kept: ", "off_reranker", "brief_reranker"),
    ("Vector search unavailable, keyword results only: ", "off_embedding", "brief_embedding"),
    ("Reranking is off (RERANKER_ENABLED=false)", "off_reranker_disabled", "off_reranker_disabled"),
    ("Vector search is off (EMBEDDING_ENABLED=false)", "off_embedding_disabled", "off_embedding_disabled"),
)


def localize_notice(notice: str, extracted: bool, language: str = "zh", brief: bool = False) -> str:
    """A library notice (English, naming the fix) led by a sentence in the UI's language.

    `brief` gives a model-missing retrieval notice without its fix: under every
    answer it would repeat the banner, which already says how to turn it on.
    """
    t = strings(language)
    if extracted and notice.startswith("LLM_BACKEND=none"):
        return t["off_llm_none"]
    for prefix, full, short in _NOTICE_PREFIXES:
        if notice.startswith(prefix):
            if brief:
                return t[short]
            rest = notice[len(prefix):]
            return t[full] + rest if t[full].endswith((":", "：", ": ")) else t[full]
    if extracted:
        return t["off_llm"] + notice
    return t["notice"] + notice


def answer_notices(result: QAResult, language: str = "zh") -> list[str]:
    """The notices of one answer, the one explaining an extracted answer first."""
    extracted = result.answer.kind == "extracted"
    answer_notice = result.answer.notice
    notices = [localize_notice(answer_notice, extracted, language)] if answer_notice else []
    for notice in result.notices:
        if notice != answer_notice:
            notices.append(localize_notice(notice, False, language, brief=True))
    return notices


def final_answer_markdown(result: QAResult, turn: int, language: str = "zh") -> str:
    """The finished answer message: escaped text with linked citations, kind, notices and stage times."""
    t = strings(language)
    numbers = [s.number for s in result.sources]
    parts = [answer_markdown(result.answer.text, turn, numbers)]
    kind_label = {"extracted": t["kind_extracted"], "faq": t["kind_faq"]}.get(result.answer.kind)
    if kind_label:
        parts.append(f'<span class="askany-kind">{html.escape(kind_label)}</span>')
    parts += [notice_html(notice) for notice in answer_notices(result, language)]
    parts.append(f'<div class="askany-timings">{html.escape(t["timings"] + render_timings(result.timings, language))}'
                 "</div>")
    return "\n\n".join(parts)


def notice_html(text: str) -> str:
    """A notice as one HTML block of the chat's Markdown: escaped, and on one line, because a blank
    line would end the block and let Markdown loose on the rest."""
    return f'<div class="askany-answer-notice">⚠ {html.escape(" ".join(text.split()))}</div>'


def availability_notices(app: AskAny, language: str = "zh") -> list[str]:
    """What is switched off or missing and how to turn it on, without loading any weights."""
    t = strings(language)
    settings = app.settings
    notices: list[str] = []

    def problem(role: str) -> str | None:
        error = app.models.error(role)
        return str(error) if error is not None else role_status(settings, role).problem

    if settings.llm_backend == "none":
        notices.append(t["off_llm_none"])
    elif settings.llm_backend == "transformers" and (reason := problem("llm")):
        notices.append(t["off_llm"] + reason)
    if not settings.reranker_enabled:
        notices.append(t["off_reranker_disabled"])
    elif reason := problem("reranker"):
        notices.append(t["off_reranker"] + reason)
    if not settings.embedding_enabled:
        notices.append(t["off_embedding_disabled"])
    elif reason := problem("embedding"):
        notices.append(t["off_embedding"] + reason)
    return notices


def render_banner(notices: Sequence[str]) -> str:
    if not notices:
        return ""
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notices)
    return f'<div class="askany-banner" role="status"><ul>{items}</ul></div>'


def model_loaded(app: AskAny, role: str) -> bool:
    """Whether this process has already loaded the role's model."""
    return app.models.loaded(role)


def render_status(status: dict[str, Any], loaded: dict[str, bool], language: str = "zh") -> str:
    """The --check report as an HTML table: settings file, database, each model role, tokenizer, device.

    `status["ok"]` already includes the required model roles (see `askany.check.required_roles`).
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
        if role == "hanlp" and not state.get("name"):
            rows.append(("info", label, t["not_configured"]))
        elif state.get("ok"):
            how = t["loaded"] if loaded.get(role) else t["available"]
            rows.append(("ok", label, f"{how}: {state.get('name')} → {state.get('path')} ({state.get('source')})"))
        else:
            rows.append(("bad", label, f"{t['unavailable']}: {state.get('problem')}"))
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
    return {"role": "user", "content": escape_markdown(question)}


def thinking_message(text: str, language: str, done: bool, seconds: float | None = None) -> dict[str, Any]:
    """A collapsed "思考过程" block: Gradio shows messages with a metadata title as a closed accordion."""
    t = strings(language)
    metadata: dict[str, Any] = {"title": t["thinking_title"], "status": "done"}
    if not done:
        metadata["log"] = t["thinking_live"]
    elif seconds is not None:
        metadata["duration"] = round(seconds, 2)
    return {"role": "assistant", "content": escape_markdown(text), "metadata": metadata}


def answer_message(content: str) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


@dataclass
class Conversation:
    """One browser session's chat: its turns and the messages shown. Lives in gr.State only."""

    turns: list[Turn] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------- event handlers


def _split_tags(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.replace("，", ",").split(",")
    return [tag.strip() for tag in value if tag and tag.strip()]


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None or value == "":
        return []
    return [value] if isinstance(value, str) else [v for v in value if v]


class WebUI:
    """The page's event handlers around one AskAny; per-user data arrives and leaves through gr.State."""

    def __init__(self, app: AskAny, qa: QA | None = None):
        self.app = app
        self.settings = app.settings
        self.language = app.settings.ui_language
        self.t = strings(self.language)
        self.qa = qa or QA(app)

    # ------------------------------------------------------------ chat
    def respond(self, message: str, query_type: str = "AUTO", kbs: Sequence[str] | None = None,
                tags: Sequence[str] | str | None = None, top_k: float | None = None, rerank: bool = True,
                thinking: bool = False, conversation: Conversation | None = None
                ) -> Iterator[tuple[Any, Any, Any, Any]]:
        """Answer one question, streaming: yields (chat messages, sources panel, question box, state).

        While the answer streams only the chat changes (the other outputs are
        `gr.skip()`), so each update sends a few characters, not the whole panel.
        """
        conversation = conversation if isinstance(conversation, Conversation) else Conversation()
        question = (message or "").strip()
        if not question:
            yield conversation.messages, sources_panel(conversation.turns, self.language), "", conversation
            return
        turn_number = len(conversation.turns) + 1
        search_text, topic = retrieval_query(question, conversation.turns)
        history = history_for_model(conversation.turns)
        shown = [*conversation.messages, user_message(question)]
        panel = sources_panel(conversation.turns, self.language)
        yield [*shown, answer_message(escape_markdown(self.t["answer_pending"]))], panel, "", conversation

        options = {"query_type": (query_type or "AUTO").upper(), "kbs": _as_list(kbs) or None,
                   "tags": _split_tags(tags) or None, "top_k": int(top_k) if top_k else None,
                   "rerank": bool(rerank), "thinking": bool(thinking), "history": history}
        parts = {"thinking": "", "answer": ""}
        result: QAResult | None = None
        last_yield = 0.0
        started = time.perf_counter()
        thinking_seconds: float | None = None
        try:
            for kind, value in self.qa.ask_stream(search_text, **options):
                if kind == "done":
                    result = value
                    break
                parts[kind] += value
                if kind == "answer" and parts["thinking"] and thinking_seconds is None:
                    thinking_seconds = time.perf_counter() - started
                now = time.perf_counter()
                if now - last_yield >= STREAM_INTERVAL:
                    last_yield = now
                    yield self._streaming(shown, parts, turn_number), gr.skip(), gr.skip(), gr.skip()
        except Exception as error:  # noqa: BLE001 - the chat must say what went wrong, not hang on "…"
            if isinstance(error, AskAnyError):
                log.info("Question not answered: %s", error)
                reason = str(error)
            else:
                log.exception("Answering %r failed", question)
                reason = f"{type(error).__name__}: {error}"
            conversation.messages = [*shown, answer_message(notice_html(self.t["error"] + reason))]
            yield conversation.messages, panel, "", conversation
            return
        assert result is not None
        if parts["thinking"] and thinking_seconds is None:
            thinking_seconds = time.perf_counter() - started
        terms = query_terms(self.app, search_text)
        sources_html = render_sources(result, turn_number, terms, self.language)
        conversation.turns.append(Turn(question=question, topic=topic, answer=result.answer.text,
                                       sources_html=sources_html))
        for old in conversation.turns[:-(SOURCE_TURNS_SHOWN + 1)]:
            old.sources_html = ""  # no longer shown: keep the session state small
        final = list(shown)
        thought = result.answer.thinking or parts["thinking"]
        if thought:
            final.append(thinking_message(thought, self.language, done=True, seconds=thinking_seconds))
        final.append(answer_message(final_answer_markdown(result, turn_number, self.language)))
        conversation.messages = final
        yield final, sources_panel(conversation.turns, self.language), "", conversation

    def _streaming(self, shown: list[dict[str, Any]], parts: dict[str, str], turn: int) -> list[dict[str, Any]]:
        messages = list(shown)
        if parts["thinking"]:
            messages.append(thinking_message(parts["thinking"], self.language, done=bool(parts["answer"])))
        text = answer_markdown(parts["answer"], turn, ()) if parts["answer"] else "…"
        messages.append(answer_message(text))
        return messages

    def clear(self) -> tuple[list[dict[str, Any]], str, str, Conversation]:
        """Forget this session's conversation."""
        return [], sources_panel([], self.language), "", Conversation()

    # ------------------------------------------------------------ page load and lists
    def load_page(self) -> tuple[str, Any, Any, Any, Any]:
        """Fresh banner, knowledge-base and tag choices for a newly opened page."""
        kbs, tags = self._kb_names(), self._tags()
        upload_kb = self.settings.default_kb
        return (render_banner(availability_notices(self.app, self.language)),
                gr.update(choices=kbs), gr.update(choices=tags),
                gr.update(choices=sorted({*kbs, upload_kb}), value=upload_kb),
                gr.update(choices=[(self.t["docs_all"], ""), *kbs]))

    def _kb_names(self) -> list[str]:
        try:
            return [kb["kb"] for kb in self.app.store.knowledge_bases()]
        except AskAnyError as error:
            log.warning("Cannot list knowledge bases: %s", error)
            return []

    def _tags(self) -> list[str]:
        try:
            return self.app.store.known_tags()
        except AskAnyError as error:
            log.warning("Cannot list tags: %s", error)
            return []

    def list_documents(self, kb: str | None = None) -> tuple[list[list[Any]], list[list[Any]], Any]:
        """(knowledge-base summary rows, document rows, choices of the delete picker) for `kb` or all."""
        kb = kb or None
        summary = [[k["kb"], k["documents"], k["faq_files"], k["chunks"]] for k in self.app.store.knowledge_bases()]
        documents = self.app.store.list_documents(kb)
        rows = [[d["kb"], Path(d["source"]).name, d["chunk_count"], ", ".join(d["tags"] or []),
                 d["ingested_at"].strftime("%Y-%m-%d %H:%M") if d.get("ingested_at") else "", d["source"]]
                for d in documents]
        choices = [(f"{d['kb']} · {Path(d['source']).name}", d["source"]) for d in documents]
        return summary, rows, gr.update(choices=choices, value=None)

    def delete_document(self, kb: str | None, source: str | None) -> tuple[str, list[list[Any]], list[list[Any]], Any]:
        """Delete one document (and its uploaded copy, if it was uploaded here); returns the refreshed lists."""
        kb, source = (kb or "").strip(), (source or "").strip()
        if not source:
            return (self.t["pick_doc"], *self.list_documents(kb))
        if not kb:  # "(all)" selected: the document's own knowledge base
            owners = [d["kb"] for d in self.app.store.list_documents() if d["source"] == source]
            kb = owners[0] if len(owners) == 1 else ""
            if not kb:
                return (self.t["pick_doc"], *self.list_documents(None))
        name = Path(source).name
        if self.app.store.delete_document(kb, source):
            self._remove_uploaded_copy(source)
            message = self.t["deleted"].format(kb=kb, name=name)
            log.info("Deleted %s from %s", source, kb)
        else:
            message = self.t["not_found"].format(kb=kb, name=name)
        return (message, *self.list_documents(kb))

    def _remove_uploaded_copy(self, source: str) -> None:
        """An uploaded file is ours to remove; a document ingested from elsewhere is never touched."""
        root = self.settings.upload_dir.expanduser().resolve()
        path = Path(source)
        try:
            if path.resolve().is_relative_to(root) and path.is_file():
                path.unlink()
        except OSError as error:
            log.warning("Could not remove the uploaded copy %s: %s", source, error)

    # ------------------------------------------------------------ uploads
    def upload(self, files: Sequence[Any] | None, kb: str | None, tags: str | None,
               progress: gr.Progress = gr.Progress()) -> Iterator[tuple[str, list[list[Any]]]]:  # noqa: B008
        """Copy uploads into UPLOAD_DIR/<kb>/ under safe names, ingest them, stream a per-file table."""
        paths = [_file_path(f) for f in files or [] if _file_path(f)]
        if not paths:
            yield self.t["upload_none"], []
            return
        kb = (kb or self.settings.default_kb).strip() or self.settings.default_kb
        rows: list[list[Any]] = []
        accepted: dict[str, str] = {}  # stored path -> shown name
        for path in paths:
            shown = Path(path).name
            try:
                accepted[str(self._store_upload(Path(path), kb))] = shown
            except UploadError as error:
                rows.append(self._row(shown, FileResult(shown, "failed", reason=str(error))))
        if accepted:
            yield from self._ingest(accepted, kb, _split_tags(tags), rows, progress)
        yield self._summary(rows), rows

    def _store_upload(self, path: Path, kb: str) -> Path:
        limit = self.settings.upload_max_mb
        if not path.is_file():
            raise UploadError(self.t["upload_bad_name"])
        if path.stat().st_size > limit * 1024 * 1024:
            raise UploadError(self.t["upload_too_big"].format(mb=limit))
        try:
            target = upload_destination(self.settings.upload_dir, kb, path.name)
        except UploadError:
            raise UploadError(self.t["upload_bad_name"]) from None
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        return target

    def _ingest(self, accepted: dict[str, str], kb: str, tags: list[str], rows: list[list[Any]],
                progress: gr.Progress) -> Iterator[tuple[str, list[list[Any]]]]:
        """Run the Ingestor in a worker thread and yield the table as each file's result arrives."""
        results: queue.Queue[FileResult | BaseException | None] = queue.Queue()

        def work() -> None:
            try:
                Ingestor(self.app).run([Path(p) for p in accepted], kb=kb, tags=tags, progress=False,
                                       on_result=results.put)
            except BaseException as error:  # handed to the request thread, which re-raises it
                results.put(error)
            finally:
                results.put(None)

        worker = threading.Thread(target=work, name="askany-upload", daemon=True)
        worker.start()
        total, done = len(accepted), 0
        progress((0, total), desc=self.t["upload_progress"].format(done=0, total=total))
        while (item := results.get()) is not None:
            if isinstance(item, BaseException):
                worker.join()
                raise item
            rows.append(self._row(accepted.get(item.path, Path(item.path).name), item))
            done += 1
            message = self.t["upload_progress"].format(done=done, total=total)
            progress((done, total), desc=message)
            yield message, rows
        worker.join()

    def _row(self, name: str, result: FileResult) -> list[Any]:
        return [name, self.t.get(f"status_{result.status}", result.status), result.chunks, result.reason]

    def _summary(self, rows: list[list[Any]]) -> str:
        counts = {status: sum(1 for row in rows if row[1] == self.t[f"status_{status}"])
                  for status in ("new", "changed", "unchanged", "failed", "skipped")}
        return self.t["upload_done"].format(**counts)

    # ------------------------------------------------------------ status
    def refresh_status(self) -> tuple[str, str]:
        """(status table, banner): what --check shows, plus which models this process has loaded."""
        status = collect_status(self.settings)
        loaded = {role: model_loaded(self.app, role) for role in ROLES}
        return (render_status(status, loaded, self.language),
                render_banner(availability_notices(self.app, self.language)))


def _file_path(item: Any) -> str | None:
    """The server-side path of an uploaded file, whichever shape Gradio hands it over in."""
    if item is None:
        return None
    if isinstance(item, (str, Path)):
        return str(item)
    if isinstance(item, dict):
        return item.get("path") or item.get("name")
    return getattr(item, "path", None) or getattr(item, "name", None)


# --------------------------------------------------------------------------- page

CSS = """
.askany-banner { border: 1px solid #f59e0b; background: #fffbeb; color: #78350f; border-radius: 8px;
  padding: 6px 12px; margin: 4px 0; }
.askany-banner ul { margin: 0; padding-left: 1.2em; }
.askany-sources { max-height: 640px; overflow-y: auto; }
.askany-source { border: 1px solid #e5e7eb; border-radius: 8px; padding: 8px 10px; margin-bottom: 8px; }
.askany-source-cited { border-color: #f97316; }
.askany-source.askany-flash { box-shadow: 0 0 0 3px #fdba74; }
.askany-source-head { font-weight: 600; }
.askany-num { color: #ea580c; }
.askany-where { color: #6b7280; font-size: 0.9em; }
.askany-passage { white-space: pre-wrap; margin: 6px 0; max-height: 220px; overflow-y: auto; font-size: 0.95em; }
.askany-passage mark { background: #fde68a; padding: 0 1px; }
.askany-scores { color: #6b7280; font-size: 0.8em; }
.askany-badge { display: inline-block; font-size: 0.75em; border-radius: 4px; padding: 0 4px; margin-left: 4px;
  background: #e5e7eb; font-weight: 400; }
.askany-badge-cited { background: #ffedd5; color: #9a3412; }
.askany-badge-low { background: #fee2e2; color: #991b1b; }
.askany-kind { color: #6b7280; font-size: 0.9em; }
.askany-answer-notice { color: #92400e; font-size: 0.9em; }
.askany-timings { color: #6b7280; font-size: 0.8em; }
.askany-status td { padding: 2px 8px; vertical-align: top; }
.askany-status td:nth-child(2) { white-space: nowrap; }
.askany-status .askany-ok td:first-child { color: #16a34a; }
.askany-status .askany-bad td:first-child { color: #dc2626; }
.askany-sources-empty { color: #9ca3af; }
"""

# Citation links jump to their source card and flash it. Inline, so nothing is fetched for it.
HEAD = """<script>
document.addEventListener("click", function (event) {
  var link = event.target.closest && event.target.closest('a[href^="#askany-"]');
  if (!link) return;
  var card = document.getElementById(link.getAttribute("href").slice(1));
  if (!card) return;
  event.preventDefault();
  event.stopPropagation();
  var details = card.closest("details");
  if (details) details.open = true;
  card.scrollIntoView({behavior: "smooth", block: "nearest"});
  card.classList.add("askany-flash");
  setTimeout(function () { card.classList.remove("askany-flash"); }, 1500);
}, true);
</script>"""


def page_theme() -> gr.themes.Base:
    """Gradio's default look with system fonts only: its Google/remote font stylesheets are never requested."""
    return gr.themes.Default(font=FONT_STACK, font_mono=MONO_STACK)


def private(name: str) -> dict[str, str]:
    """Event options for a chained, browser-only event: its own name, so it never takes a public
    endpoint's name (Gradio names endpoints after the function and numbers the clashes)."""
    return {"api_name": name, "api_visibility": "private"}


def build_app(app: AskAny, qa: QA | None = None) -> gr.Blocks:
    """The whole page: chat, documents and status tabs, wired to a `WebUI` for `app`.

    `qa` replaces the default `QA(app)` (tests pass one with a scripted generator).
    """
    ui = WebUI(app, qa)
    t, settings = ui.t, app.settings
    with gr.Blocks(title=t["title"], analytics_enabled=False, delete_cache=(3600, 3600)) as blocks:
        conversation = gr.State(Conversation())
        gr.Markdown(f"## {escape_markdown(t['title'])}\n{escape_markdown(t['subtitle'])}")
        banner = gr.HTML("", elem_id="askany-banner", js_on_load=None)
        with gr.Tabs():
            with gr.Tab(t["tab_chat"], id="chat"):
                with gr.Row():
                    with gr.Column(scale=3):
                        chatbot = gr.Chatbot(label=t["chat"], elem_id="askany-chat", height=520,
                                             latex_delimiters=[], sanitize_html=True, buttons=["copy"],
                                             feedback_options=None, allow_tags=False)
                        with gr.Row():
                            question = gr.Textbox(label=t["question"], placeholder=t["placeholder"],
                                                  elem_id="askany-question", scale=5, lines=1, max_lines=4,
                                                  show_label=False, autofocus=True)
                            send = gr.Button(t["send"], variant="primary", scale=1, elem_id="askany-send")
                        with gr.Row():
                            query_type = gr.Radio(
                                [(t["qt_auto"], "AUTO"), (t["qt_faq"], "FAQ"), (t["qt_docs"], "DOCS")],
                                value=QUERY_TYPES[0], label=t["query_type"])
                            kbs = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True,
                                              label=t["kbs"])
                            tags = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True,
                                               label=t["tags"])
                        with gr.Row():
                            top_k = gr.Slider(1, 20, value=settings.top_k, step=1, label=t["top_k"])
                            rerank = gr.Checkbox(value=settings.reranker_enabled, label=t["rerank"])
                            thinking = gr.Checkbox(value=settings.llm_enable_thinking, label=t["thinking"])
                            clear = gr.Button(t["clear"], variant="secondary")
                    with gr.Column(scale=2):
                        gr.Markdown(f"**{escape_markdown(t['sources'])}**")
                        sources = gr.HTML(sources_panel([], ui.language), elem_id="askany-sources",
                                          js_on_load=None)
            with gr.Tab(t["tab_docs"], id="docs"):
                gr.Markdown(f"### {escape_markdown(t['upload_title'])}")
                with gr.Row():
                    files = gr.File(file_count="multiple", label=t["upload_files"], elem_id="askany-files",
                                    scale=3)
                    with gr.Column(scale=2):
                        upload_kb = gr.Dropdown([settings.default_kb], value=settings.default_kb,
                                                allow_custom_value=True, label=t["upload_kb"])
                        upload_tags = gr.Textbox(label=t["upload_tags"])
                        upload_button = gr.Button(t["upload_button"], variant="primary")
                upload_status = gr.Markdown("")
                upload_table = gr.Dataframe(headers=[t["col_file"], t["col_status"], t["col_chunks"],
                                                     t["col_reason"]], value=[], interactive=False,
                                            label=t["upload_results"], wrap=True)
                gr.Markdown(f"### {escape_markdown(t['docs_title'])}")
                with gr.Row():
                    docs_kb = gr.Dropdown([(t["docs_all"], "")], value="", allow_custom_value=True,
                                          label=t["docs_kb"])
                    refresh_docs = gr.Button(t["refresh"])
                kb_table = gr.Dataframe(headers=[t["col_kb"], t["col_docs"], t["col_faq"], t["col_chunks"]],
                                        value=[], interactive=False, label=t["kb_summary"])
                doc_table = gr.Dataframe(headers=[t["col_kb"], t["col_file"], t["col_chunks"], t["col_tags"],
                                                  t["col_time"], t["col_path"]],
                                         value=[], interactive=False, label=t["doc_list"], wrap=True)
                with gr.Row():
                    doc_pick = gr.Dropdown([], value=None, allow_custom_value=True, label=t["doc_pick"], scale=3)
                    delete = gr.Button(t["delete"], variant="stop", scale=1)
                delete_status = gr.Markdown("")
            with gr.Tab(t["tab_status"], id="status"):
                gr.Markdown(f"### {escape_markdown(t['status_title'])}")
                status_html = gr.HTML("", elem_id="askany-status", js_on_load=None)
                refresh_status = gr.Button(t["refresh"])

        chat_inputs = [question, query_type, kbs, tags, top_k, rerank, thinking, conversation]
        chat_outputs = [chatbot, sources, question, conversation]
        send.click(ui.respond, chat_inputs, chat_outputs, api_name="respond", concurrency_limit=2)
        question.submit(ui.respond, chat_inputs, chat_outputs, api_name="respond_on_enter", api_visibility="private",
                        concurrency_limit=2)
        clear.click(ui.clear, None, chat_outputs, api_name="clear")

        lists = [kb_table, doc_table, doc_pick]
        upload_event = upload_button.click(ui.upload, [files, upload_kb, upload_tags],
                                           [upload_status, upload_table], api_name="upload")
        refreshed_choices = [banner, kbs, tags, upload_kb, docs_kb]
        upload_event.then(ui.list_documents, [docs_kb], lists, **private("documents_after_upload")) \
            .then(ui.load_page, None, refreshed_choices, **private("choices_after_upload"))
        refresh_docs.click(ui.list_documents, [docs_kb], lists, api_name="list_documents")
        docs_kb.change(ui.list_documents, [docs_kb], lists, **private("documents_of_kb"))
        delete.click(ui.delete_document, [docs_kb, doc_pick], [delete_status, *lists],
                     api_name="delete_document") \
            .then(ui.load_page, None, refreshed_choices, **private("choices_after_delete"))
        refresh_status.click(ui.refresh_status, None, [status_html, banner], api_name="refresh_status")

        blocks.load(ui.load_page, None, refreshed_choices, api_name="load_page") \
            .then(ui.list_documents, [docs_kb], lists, **private("documents_on_load")) \
            .then(ui.refresh_status, None, [status_html, banner], **private("status_on_load"))
    return blocks


def warm_up(app: AskAny) -> None:
    """Load the tokenizer and models in the background, so the first question is not the slow one."""
    started = time.perf_counter()
    try:
        _ = app.store
        _ = app.analyzer
        app.embedding_model()
        if app.settings.reranker_enabled:
            app.models.optional("reranker")
        if app.settings.llm_backend == "transformers":
            app.models.optional("llm")
    except Exception:  # a warm-up failure must not take the page down; the first request reports it
        log.exception("Warming up the models failed")
    log.info("Models warmed up in %.1f s", time.perf_counter() - started)


def serve(app: AskAny | None = None, *, host: str | None = None, port: int | None = None,
          block: bool = True, warm: bool = True, qa: QA | None = None) -> gr.Blocks:
    """Serve the page on UI_HOST:UI_PORT (or `host`/`port`); with block=False return once it listens.

    Never shared, no analytics, no server-side rendering through Node, no MCP
    or PWA endpoints: the page and all its assets come from this process.
    """
    app = app or AskAny()
    settings = app.settings
    blocks = build_app(app, qa)
    if warm:
        threading.Thread(target=warm_up, args=(app,), name="askany-warm-up", daemon=True).start()
    blocks.queue(default_concurrency_limit=1)
    host = host or settings.ui_host
    port = port or settings.ui_port
    log.info("Serving the AskAny page on http://%s:%d", host, port)
    blocks.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=not block,
                  inbrowser=False, show_error=True, quiet=not block,
                  max_file_size=int(settings.upload_max_mb * 1024 * 1024), ssr_mode=False, pwa=False,
                  mcp_server=False, enable_monitoring=False, footer_links=["api", "settings"],
                  theme=page_theme(), css=CSS, head=HEAD)
    return blocks
