"""The page's Gradio event handlers (`WebUI`) and one browser session's chat state (`Conversation`).

Each handler calls the service layer and hands the result to render.py; it never reaches the
store, the database or a model loader. A conversation lives in Gradio session state
(`gr.State`), never in module globals, so two users never see each other's turns.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from askany.core.errors import AskAnyError
from askany.core.text import split_tags
from askany.service import (
    FileResult,
    KnowledgeBaseError,
    QAResult,
    Service,
    history_for_model,
    retrieval_query,
)
from askany.web.i18n import availability_notices, kb_problem, strings
from askany.web.markup import plain_html
from askany.web.render import (
    SOURCE_TURNS_SHOWN,
    PageTurn,
    answer_markdown,
    answer_message,
    escape_markdown,
    final_answer_markdown,
    notice_html,
    render_banner,
    render_progress,
    render_sources,
    render_status,
    render_viewer,
    source_record,
    sources_panel,
    stopped_answer_html,
    thinking_message,
    user_message,
)

log = logging.getLogger(__name__)

STREAM_INTERVAL = 0.05  # seconds between streamed updates: enough for the eye, light on the socket


def query_terms(service: Service, question: str) -> list[str]:
    """Words of the question worth highlighting in a passage: the analyzer's words and bigrams."""
    try:
        return service.highlight_terms(question)
    except Exception:  # highlighting is decoration: never fail an answer over it
        log.exception("Could not compute highlight terms")
        return []


@dataclass
class Conversation:
    """One browser session's chat: its turns and the messages shown. Lives in gr.State, and a copy
    in the browser's storage (gr.BrowserState) brings it back after a reload."""

    turns: list[PageTurn] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    asked: str = ""  # the last question asked, answered or not (what regenerate asks again)
    asked_at: int = -1  # index of its message
    rated: int = -1  # the turn last rated 👍/👎 (the one a comment is for)

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "turns": [asdict(turn) for turn in self.turns], "messages": self.messages,
                "asked": self.asked, "asked_at": self.asked_at, "rated": self.rated}

    @classmethod
    def from_dict(cls, data: Any) -> Conversation:
        """A conversation saved by `to_dict`; anything else (nothing saved, an older shape) is a new one."""
        if not isinstance(data, dict) or data.get("version") != 1:
            return cls()
        try:
            return cls([PageTurn(**turn) for turn in data.get("turns") or []], list(data.get("messages") or []),
                       str(data.get("asked") or ""), int(data.get("asked_at", -1)), int(data.get("rated", -1)))
        except (TypeError, ValueError):
            return cls()


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None or value == "":
        return []
    return [value] if isinstance(value, str) else [v for v in value if v]


STOP_GRACE = 0.5  # seconds a stopped answer waits for the model to hand back what it wrote (and its sources)


class WebUI:
    """The page's event handlers around the service layer; per-user data arrives and leaves through gr.State."""

    def __init__(self, service: Service):
        self.service = service
        self.settings = service.settings
        self.language = service.settings.ui_language
        self.t = strings(self.language)
        self._stops: dict[str, threading.Event] = {}  # session -> its answer's stop switch
        self._stops_lock = threading.Lock()

    # ------------------------------------------------------------ chat
    def respond(self, message: str, query_type: str = "AUTO", kbs: Sequence[str] | None = None,
                tags: Sequence[str] | str | None = None, top_k: float | None = None, rerank: bool = True,
                thinking: bool = False, conversation: Conversation | None = None,
                request: gr.Request = None) -> Iterator[tuple[Any, Any, Any, Any]]:
        """Answer one question, streaming: yields (chat messages, sources panel, question box, state).

        While the answer streams only the chat changes (the other outputs are
        `gr.skip()`), so each update sends a few characters, not the whole panel.
        The stop button (`stop`) ends it at once, keeping what was written.
        """
        conversation = conversation if isinstance(conversation, Conversation) else Conversation()
        question = (message or "").strip()
        if not question:
            yield conversation.messages, sources_panel(conversation.turns, self.language), "", conversation
            return
        session = _session(request, conversation)
        stop = threading.Event()
        with self._stops_lock:
            previous = self._stops.get(session)
            if previous is not None:
                previous.set()  # one answer at a time per session: a new question ends the old one
            self._stops[session] = stop
        try:
            yield from self._answer(question, conversation, stop, query_type, kbs, tags, top_k, rerank, thinking)
        finally:
            stop.set()  # a closed stream (page closed, event cancelled) ends the model's work too
            with self._stops_lock:
                if self._stops.get(session) is stop:
                    del self._stops[session]

    def _answer(self, question: str, conversation: Conversation, stop: threading.Event, query_type: str,
                kbs: Sequence[str] | None, tags: Sequence[str] | str | None, top_k: float | None, rerank: bool,
                thinking: bool) -> Iterator[tuple[Any, Any, Any, Any]]:
        turn_number = len(conversation.turns) + 1
        search_text, topic = retrieval_query(question, conversation.turns)
        history = history_for_model(conversation.turns)
        conversation.asked, conversation.asked_at = question, len(conversation.messages)
        shown = [*conversation.messages, user_message(question)]
        panel = sources_panel(conversation.turns, self.language)
        yield [*shown, answer_message(plain_html(self.t["answer_pending"]))], panel, "", conversation

        options = {"query_type": (query_type or "AUTO").upper(), "kbs": _as_list(kbs) or None,
                   "tags": split_tags(tags) or None, "top_k": int(top_k) if top_k else None,
                   "rerank": bool(rerank), "thinking": bool(thinking)}
        parts = {"thinking": "", "answer": ""}
        result: QAResult | None = None
        last_yield = 0.0
        started = time.perf_counter()
        thinking_seconds: float | None = None
        try:
            for kind, value in self._events(search_text, stop, {**options, "history": history}):
                if kind == "done":
                    result = value
                    break
                if kind == "stopped":
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
        if parts["thinking"] and thinking_seconds is None:
            thinking_seconds = time.perf_counter() - started
        final = list(shown)
        thought = (result.answer.thinking if result else "") or parts["thinking"]
        if thought:
            final.append(thinking_message(thought, self.language, done=True, seconds=thinking_seconds))
        if result is None:  # stopped before the model handed anything back: what was shown is kept
            sources_html, sources = "", []
            final.append(answer_message(stopped_answer_html(parts["answer"], turn_number, self.language)))
            answer_text = parts["answer"]
        else:
            terms = query_terms(self.service, search_text)
            sources_html = render_sources(result, turn_number, terms, self.language)
            sources = [source_record(s, s.number in result.answer.citations) for s in result.sources]
            final.append(answer_message(final_answer_markdown(result, turn_number, self.language)))
            answer_text = result.answer.text
        conversation.turns.append(PageTurn(question=question, topic=topic, answer=answer_text,
                                           sources_html=sources_html, message_start=len(shown) - 1,
                                           answer_index=len(final) - 1, sources=sources, options=options))
        for old in conversation.turns[:-(SOURCE_TURNS_SHOWN + 1)]:
            old.sources_html = ""  # no longer shown: keep the session state small
        conversation.messages = final
        yield final, sources_panel(conversation.turns, self.language), "", conversation

    def _events(self, search_text: str, stop: threading.Event,
                options: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        """The service's answer events, read in a worker thread so that a stop ends them at once: after
        a stop, ("done", result) if the model hands its partial answer back within STOP_GRACE, else
        ("stopped", None) while it finishes its current piece in the background."""
        events: queue.Queue[tuple[str, Any] | None] = queue.Queue()

        def work() -> None:
            try:
                for event in self.service.ask_stream(search_text, stop=stop, **options):
                    events.put(event)
            except BaseException as error:  # handed to the request thread, which re-raises it
                events.put(("error", error))
            finally:
                events.put(None)

        threading.Thread(target=work, name="askany-answer", daemon=True).start()
        stopped_at: float | None = None
        while True:
            try:
                event = events.get(timeout=0.05)
            except queue.Empty:
                if stop.is_set():
                    stopped_at = stopped_at or time.perf_counter()
                    if time.perf_counter() - stopped_at > STOP_GRACE:
                        yield "stopped", None
                        return
                continue
            if event is None:
                return
            if event[0] == "error":
                raise event[1]
            if stop.is_set() and event[0] != "done":
                continue  # what the model wrote after the stop is not shown
            yield event

    def stop(self, request: gr.Request = None) -> None:
        """End this session's answer now; what was written stays, marked as stopped."""
        session = request.session_hash if request is not None else None
        with self._stops_lock:
            switch = self._stops.get(session) if session else None
        if switch is not None:
            switch.set()

    def regenerate(self, query_type: str = "AUTO", kbs: Sequence[str] | None = None,
                   tags: Sequence[str] | str | None = None, top_k: float | None = None, rerank: bool = True,
                   thinking: bool = False, conversation: Conversation | None = None,
                   request: gr.Request = None) -> Iterator[tuple[Any, Any, Any, Any]]:
        """Ask the last question again (with the settings now chosen), in place of its answer."""
        conversation = conversation if isinstance(conversation, Conversation) else Conversation()
        if not conversation.asked or conversation.asked_at < 0:
            yield conversation.messages, sources_panel(conversation.turns, self.language), gr.skip(), conversation
            return
        if conversation.turns and conversation.turns[-1].message_start == conversation.asked_at:
            conversation.turns.pop()
        conversation.messages = conversation.messages[:conversation.asked_at]
        yield from self.respond(conversation.asked, query_type, kbs, tags, top_k, rerank, thinking, conversation,
                                request)

    def _streaming(self, shown: list[dict[str, Any]], parts: dict[str, str], turn: int) -> list[dict[str, Any]]:
        messages = list(shown)
        if parts["thinking"]:
            messages.append(thinking_message(parts["thinking"], self.language, done=bool(parts["answer"])))
        text = answer_markdown(parts["answer"], turn, (), self.language) if parts["answer"] else "…"
        messages.append(answer_message(text))
        return messages

    def clear(self) -> tuple[list[dict[str, Any]], str, str, Conversation]:
        """Start a new conversation: forget this session's turns."""
        return [], sources_panel([], self.language), "", Conversation()

    def restore(self, saved: Any) -> tuple[list[dict[str, Any]], str, Conversation]:
        """The conversation the browser kept (gr.BrowserState), shown again after a reload."""
        conversation = Conversation.from_dict(saved)
        return conversation.messages, sources_panel(conversation.turns, self.language), conversation

    @staticmethod
    def snapshot(conversation: Conversation | None) -> dict[str, Any]:
        """What the browser keeps of a conversation (see `restore`)."""
        return (conversation if isinstance(conversation, Conversation) else Conversation()).to_dict()

    # ------------------------------------------------------------ the source viewer
    def view_source(self, chunk_id: str | float | None) -> tuple[str, int | None]:
        """(viewer HTML, its chunk): a cited passage among its neighbours in its document."""
        return self._viewer(chunk_id, whole=False)

    def view_document(self, chunk_id: int | None) -> tuple[str, int | None]:
        """(viewer HTML, its chunk): the whole text of the viewed passage's document."""
        return self._viewer(chunk_id, whole=True)

    def _viewer(self, chunk_id: Any, whole: bool) -> tuple[str, int | None]:
        try:
            number = int(str(chunk_id).strip())
        except (TypeError, ValueError):
            return notice_html(self.t["viewer_empty"]), None
        try:
            context = self.service.document_text(number) if whole else self.service.passage_context(number)
        except AskAnyError as error:
            return notice_html(str(error)), None
        return render_viewer(context, self.language), number

    # ------------------------------------------------------------ feedback
    def rate(self, conversation: Conversation | None, data: gr.LikeData) -> tuple[Any, str, Conversation]:
        """👍/👎 on an answer: stored at once (with its question, sources and settings); the comment box
        opens for an optional comment. Clicking the same thumb again takes the rating back."""
        conversation = conversation if isinstance(conversation, Conversation) else Conversation()
        index = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        number = next((n for n, turn in enumerate(conversation.turns) if turn.answer_index == index), None)
        if number is None:
            return gr.update(visible=False), self.t["feedback_not_answer"], conversation
        turn = conversation.turns[number]
        liked = data.liked
        try:
            if liked in (None, "") and turn.feedback_id is not None:
                self.service.feedback.delete(turn.feedback_id)
                turn.feedback_id = None
                return gr.update(visible=False), self.t["feedback_removed"], conversation
            rating = "up" if liked is True or str(liked).lower() == "like" else "down"
            if turn.feedback_id is None:
                turn.feedback_id = self.service.record_feedback(rating, turn.question, turn.answer, turn.sources,
                                                                turn.options)
            else:
                self.service.update_feedback(turn.feedback_id, rating=rating)
        except AskAnyError as error:
            return gr.update(visible=False), f"{self.t['feedback_failed']}{error}", conversation
        conversation.rated = number
        return (gr.update(visible=True), self.t["feedback_saved_" + rating], conversation)

    def comment(self, text: str | None, conversation: Conversation | None) -> tuple[Any, Any, str]:
        """The optional comment on the answer last rated."""
        conversation = conversation if isinstance(conversation, Conversation) else Conversation()
        if not 0 <= conversation.rated < len(conversation.turns) or \
                conversation.turns[conversation.rated].feedback_id is None:
            return gr.update(), gr.update(visible=False), self.t["feedback_not_answer"]
        try:
            self.service.update_feedback(conversation.turns[conversation.rated].feedback_id, comment=text or "")
        except AskAnyError as error:
            return gr.update(), gr.update(visible=True), f"{self.t['feedback_failed']}{error}"
        return "", gr.update(visible=False), self.t["feedback_commented"]

    # ------------------------------------------------------------ page load and lists
    def load_page(self, upload_kb: str | None = None) -> tuple[str, Any, Any, Any, Any, Any]:
        """Fresh banner, knowledge-base and tag choices (chat filter, upload target, document list,
        kb to delete) for a newly opened page, or after a kb was created or deleted."""
        kbs, tags = self._kb_names(), self._tags()
        upload_kb = upload_kb if upload_kb in kbs else self.settings.default_kb
        return (render_banner(availability_notices(self.service, self.language)),
                gr.update(choices=kbs), gr.update(choices=tags),
                gr.update(choices=sorted({*kbs, upload_kb}), value=upload_kb),
                gr.update(choices=[(self.t["docs_all"], ""), *kbs]),
                gr.update(choices=kbs, value=None))

    def _kb_names(self) -> list[str]:
        try:
            return self.service.kb_names()
        except AskAnyError as error:
            log.warning("Cannot list knowledge bases: %s", error)
            return []

    def _tags(self) -> list[str]:
        try:
            return self.service.tags()
        except AskAnyError as error:
            log.warning("Cannot list tags: %s", error)
            return []

    def list_documents(self, kb: str | None = None) -> tuple[list[list[Any]], list[list[Any]], Any]:
        """(knowledge-base summary rows, document rows, choices of the delete picker) for `kb` or all."""
        kb = kb or None
        summary = [[k["kb"], k["documents"], k["faq_files"], k["chunks"]] for k in self.service.knowledge_bases()]
        documents = self.service.list_documents(kb)
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
        try:  # with "(all)" selected, the document's own knowledge base
            result = self.service.delete_document(kb or None, source)
        except AskAnyError:
            return (self.t["pick_doc"], *self.list_documents(None))
        name = Path(source).name
        if result.deleted:
            message = self.t["deleted"].format(kb=result.kb, name=name)
            log.info("Deleted %s from %s", source, result.kb)
        else:
            message = self.t["not_found"].format(kb=result.kb, name=name)
        return (message, *self.list_documents(kb))

    # ------------------------------------------------------------ knowledge bases
    def create_kb(self, name: str | None) -> tuple[Any, ...]:
        """Create an empty knowledge base, made the upload target: (message, name box, lists, choices)."""
        try:
            kb = self.service.create_kb(name)
        except KnowledgeBaseError as error:
            return (escape_markdown(kb_problem(error, self.language)), gr.skip(),
                    *(gr.skip() for _ in range(9)))
        return (escape_markdown(self.t["kb_created"].format(kb=kb)), "", *self.list_documents(None),
                *self.load_page(upload_kb=kb))

    def ask_delete_kb(self, kb: str | None) -> tuple[str, Any, str]:
        """The first step of deleting a kb: (what will go, the confirmation row shown, its box emptied)."""
        kb = (kb or "").strip()
        found = next((k for k in self.service.knowledge_bases() if k["kb"] == kb), None) if kb else None
        if found is None:
            return escape_markdown(self.t["kb_pick_first"]), gr.update(visible=False), ""
        message = self.t["kb_confirm_ask"].format(kb=kb, docs=found["documents"], chunks=found["chunks"])
        return escape_markdown(message), gr.update(visible=True), ""

    def cancel_delete_kb(self) -> tuple[str, Any, str]:
        return escape_markdown(self.t["kb_cancelled"]), gr.update(visible=False), ""

    def confirm_delete_kb(self, kb: str | None, typed: str | None) -> tuple[Any, ...]:
        """Delete the kb once its name was typed again: (message, confirmation row, box, lists, choices)."""
        kb, typed = (kb or "").strip(), (typed or "").strip()
        if not kb:
            return (escape_markdown(self.t["kb_pick_first"]), gr.update(visible=False), "",
                    *(gr.skip() for _ in range(9)))
        if typed != kb:
            return (escape_markdown(self.t["kb_mismatch"].format(kb=kb)), gr.update(visible=True), gr.skip(),
                    *(gr.skip() for _ in range(9)))
        try:
            result = self.service.delete_kb(kb)
        except KnowledgeBaseError as error:
            return (escape_markdown(kb_problem(error, self.language)), gr.update(visible=False), "",
                    *self.list_documents(None), *self.load_page())
        message = self.t["kb_deleted"].format(kb=kb, docs=result.documents, chunks=result.chunks,
                                              uploads=result.uploads_removed)
        return (escape_markdown(message), gr.update(visible=False), "", *self.list_documents(None),
                *self.load_page())

    # ------------------------------------------------------------ uploads
    def upload(self, files: Sequence[Any] | None, kb: str | None, tags: str | None,
               progress: gr.Progress = gr.Progress()) -> Iterator[tuple[str, list[list[Any]]]]:  # noqa: B008
        """Copy uploads into UPLOAD_DIR/<kb>/ under safe names, ingest them, stream a per-file table."""
        paths = [_file_path(f) for f in files or [] if _file_path(f)]
        if not paths:
            yield self.t["upload_none"], []
            return
        kb = (kb or self.settings.default_kb).strip() or self.settings.default_kb
        try:
            stored, refused = self.service.store_uploads([Path(path) for path in paths], kb)
        except KnowledgeBaseError as error:
            yield escape_markdown(kb_problem(error, self.language)), []
            return
        rows = [self._row(result.path, result) for result in refused]
        if stored:
            yield from self._ingest(stored, kb, split_tags(tags), rows, progress)
        yield self._summary(rows), rows

    def _ingest(self, accepted: dict[str, str], kb: str, tags: list[str], rows: list[list[Any]],
                progress: gr.Progress) -> Iterator[tuple[str, list[list[Any]]]]:
        """Ingest in a worker thread and yield the table as each file's result arrives."""
        results: queue.Queue[FileResult | BaseException | None] = queue.Queue()

        def work() -> None:
            try:
                self.service.ingest([Path(p) for p in accepted], kb=kb, tags=tags, on_result=results.put)
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

    def start_upload(self, files: Sequence[Any] | None, kb: str | None,
                     tags: str | None) -> tuple[str, list[list[Any]], str | None, Any]:
        """Store the uploads and ingest them in the background: (progress, table, job id, timer).
        The page polls `upload_progress` with the job id while the chat stays usable."""
        paths = [_file_path(f) for f in files or [] if _file_path(f)]
        if not paths:
            return escape_markdown(self.t["upload_none"]), [], None, gr.Timer(active=False)
        kb = (kb or self.settings.default_kb).strip() or self.settings.default_kb
        try:
            job = self.service.start_upload([Path(path) for path in paths], kb, split_tags(tags))
        except AskAnyError as error:
            return notice_html(kb_problem(error, self.language)), [], None, gr.Timer(active=False)
        progress, rows, _ = self.upload_progress(job.id)
        return progress, rows, job.id, gr.Timer(active=True)

    def upload_progress(self, job_id: str | None) -> tuple[str, list[list[Any]], Any]:
        """(progress bar, per-file table, timer) of a background upload; the timer stops when it is done."""
        job = self.service.ingest_job(job_id)
        if job is None:
            return gr.skip(), gr.skip(), gr.Timer(active=False)
        results = job.snapshot()
        rows = [self._row(name, result) for name, result in results]
        if job.finished:
            summary = self._summary(rows)
            if job.error:
                summary += " " + self.t["error"] + job.error
            return render_progress(job.total, job.total, "", summary, self.language), rows, gr.Timer(active=False)
        message = self.t["upload_progress"].format(done=len(results), total=job.total)
        return render_progress(len(results), job.total, job.current(), message, self.language), rows, gr.skip()

    def refresh_after_upload(self, job_id: str | None, kb: str | None) -> tuple[Any, ...]:
        """The document lists and choices, once an upload has finished (each tick before that skips)."""
        job = self.service.ingest_job(job_id)
        if job is None or not job.finished:
            return tuple(gr.skip() for _ in range(9))
        return (*self.list_documents(kb), *self.load_page(upload_kb=job.kb))

    def _row(self, name: str, result: FileResult) -> list[Any]:
        return [name, self.t.get(f"status_{result.status}", result.status), result.chunks, result.reason]

    def _summary(self, rows: list[list[Any]]) -> str:
        counts = {status: sum(1 for row in rows if row[1] == self.t[f"status_{status}"])
                  for status in ("new", "changed", "unchanged", "failed", "skipped")}
        return self.t["upload_done"].format(**counts)

    # ------------------------------------------------------------ status
    def refresh_status(self) -> tuple[str, str]:
        """(status table, banner): what --check shows, plus which models this process has loaded."""
        status = self.service.status()
        return (render_status(status, status["loaded"], self.language),
                render_banner(availability_notices(self.service, self.language)))


def _session(request: gr.Request | None, conversation: Conversation) -> str:
    """The browser session an answer belongs to (its stop button's), or the conversation for API calls."""
    return getattr(request, "session_hash", None) or f"conversation-{id(conversation)}"


def _file_path(item: Any) -> str | None:
    """The server-side path of an uploaded file, whichever shape Gradio hands it over in."""
    if item is None:
        return None
    if isinstance(item, (str, Path)):
        return str(item)
    if isinstance(item, dict):
        return item.get("path") or item.get("name")
    return getattr(item, "path", None) or getattr(item, "name", None)
