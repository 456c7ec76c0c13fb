"""The page itself: its layout and wiring (`build_app`), its theme and the model warm-up; `serving.py`
serves it.

No analytics, a theme with system fonts only and no CDN scripts: the page and all its assets come
from this process. Its CSS and its one script are package data in static/, put inline into the page.
"""

from __future__ import annotations

import html
import logging
import os
import secrets
import time
from importlib import resources
from pathlib import Path

import gradio as gr

from askany.service import QUERY_TYPES, Service
from askany.web.handlers import Conversation, WebUI
from askany.web.render import escape_markdown, sources_panel

log = logging.getLogger(__name__)

FONT_STACK = ["WenQuanYi Micro Hei", "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", "system-ui",
              "sans-serif"]
MONO_STACK = ["ui-monospace", "Consolas", "monospace"]


def static_text(name: str) -> str:
    """A file of askany/web/static/ (package data), read through importlib so it works from a wheel too."""
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def page_theme() -> gr.themes.Base:
    """Gradio's default look with system fonts only: its Google/remote font stylesheets are never requested."""
    return gr.themes.Default(font=FONT_STACK, font_mono=MONO_STACK)


def private(name: str) -> dict[str, str]:
    """Event options for a chained, browser-only event: its own name, so it never takes a public
    endpoint's name (Gradio names endpoints after the function and numbers the clashes)."""
    return {"api_name": name, "api_visibility": "private"}


def conversation_secret(data_dir: Path) -> str | None:
    """The key Gradio encrypts a saved conversation with in the browser, kept in DATA_DIR (mode 0600):
    with Gradio's own key, new in every process, a conversation would not survive a server restart.
    Two processes creating it at once end with the same key (written aside, then linked into place).
    None (Gradio's key) when the folder cannot hold it."""
    path = data_dir / "page-secret"
    try:
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            aside = path.with_name(f".page-secret-{os.getpid()}")
            handle = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(handle, secrets.token_urlsafe(32).encode("ascii"))
            finally:
                os.close(handle)
            try:
                os.link(aside, path)  # fails if another process was first: its key is the one
            except FileExistsError:
                pass
            finally:
                aside.unlink(missing_ok=True)
        return path.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError) as error:
        log.warning("Saved conversations will not survive a restart: cannot keep a key in %s (%s)", data_dir, error)
        return None


def build_app(service: Service) -> gr.Blocks:
    """The whole page: chat, documents and status tabs, wired to a `WebUI` for `service`."""
    ui = WebUI(service)
    t, settings = ui.t, service.settings
    with gr.Blocks(title=t["title"], analytics_enabled=False, delete_cache=(3600, 3600)) as blocks:
        conversation = gr.State(Conversation())
        # The conversation again, in the browser's localStorage (encrypted by Gradio), for reloads
        # of the page and restarts of the server.
        saved = gr.BrowserState(None, storage_key="askany-conversation",
                                secret=conversation_secret(settings.data_dir))
        gr.Markdown(f"## {escape_markdown(t['title'])}\n{escape_markdown(t['subtitle'])}")
        banner = gr.HTML("", elem_id="askany-banner", js_on_load=None)
        with gr.Tabs():
            with gr.Tab(t["tab_chat"], id="chat"):
                with gr.Row():
                    with gr.Column(scale=3):
                        chatbot = gr.Chatbot(label=t["chat"], elem_id="askany-chat", height=520,
                                             latex_delimiters=[], sanitize_html=True, render_markdown=False,
                                             feedback_options=("Like", "Dislike"), allow_tags=False)
                        feedback_note = gr.Markdown("", elem_id="askany-feedback-note")
                        with gr.Row(visible=False, elem_id="askany-feedback") as feedback_box:
                            feedback_text = gr.Textbox(label=t["feedback_comment"], lines=2, max_lines=6, scale=4,
                                                       max_length=2000, elem_id="askany-feedback-text")
                            feedback_send = gr.Button(t["feedback_send"], scale=1, elem_id="askany-feedback-send")
                        with gr.Row():
                            question = gr.Textbox(label=t["question"], placeholder=t["placeholder"],
                                                  elem_id="askany-question", scale=5, lines=1, max_lines=4,
                                                  show_label=False, autofocus=True)
                            send = gr.Button(t["send"], variant="primary", scale=1, elem_id="askany-send")
                        with gr.Row():
                            stop = gr.Button(t["stop"], variant="stop", size="sm", elem_id="askany-stop")
                            regenerate = gr.Button(t["regenerate"], size="sm", elem_id="askany-regenerate")
                            clear = gr.Button(t["new_chat"], variant="secondary", size="sm", elem_id="askany-new")
                        with gr.Row():
                            query_type = gr.Radio(
                                [(t["qt_auto"], "AUTO"), (t["qt_faq"], "FAQ"), (t["qt_docs"], "DOCS")],
                                value=QUERY_TYPES[0], label=t["query_type"])
                            kbs = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True,
                                              label=t["kbs"], elem_id="askany-kbs")
                            tags = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True,
                                               label=t["tags"])
                        with gr.Row():
                            top_k = gr.Slider(1, 20, value=settings.top_k, step=1, label=t["top_k"])
                            rerank = gr.Checkbox(value=settings.reranker_enabled, label=t["rerank"])
                            thinking = gr.Checkbox(value=settings.llm_enable_thinking, label=t["thinking"])
                    with gr.Column(scale=2):
                        gr.Markdown(f"**{escape_markdown(t['sources'])}**")
                        sources = gr.HTML(sources_panel([], ui.language), elem_id="askany-sources",
                                          js_on_load=None)
                        with gr.Accordion(t["viewer"], open=False, elem_id="askany-viewer-box") as viewer_box:
                            viewer = gr.HTML(f'<div class="askany-sources-empty">{html.escape(t["viewer_empty"])}'
                                             "</div>", elem_id="askany-viewer", js_on_load=None)
                            viewer_full = gr.Button(t["viewer_full"], size="sm", elem_id="askany-viewer-full")
                        viewed = gr.State(None)
                        # What page.js fills in when a citation or a card's button asks for a passage.
                        with gr.Row(elem_classes=["askany-hidden"]):
                            view_chunk = gr.Textbox(elem_id="askany-view-chunk", show_label=False, container=False)
                            view_go = gr.Button("view", elem_id="askany-view-go")
            with gr.Tab(t["tab_docs"], id="docs"):
                gr.Markdown(f"### {escape_markdown(t['kb_title'])}")
                with gr.Row(elem_id="askany-kb-manage"):
                    with gr.Column(scale=1):
                        kb_new = gr.Textbox(label=t["kb_new"], placeholder=t["kb_new_placeholder"], max_lines=1,
                                            elem_id="askany-kb-new")
                        kb_create = gr.Button(t["kb_create"], elem_id="askany-kb-create")
                    with gr.Column(scale=1):
                        kb_pick = gr.Dropdown([], value=None, label=t["kb_pick"], elem_id="askany-kb-pick")
                        kb_delete = gr.Button(t["kb_delete"], variant="stop", elem_id="askany-kb-delete")
                with gr.Row(visible=False, elem_id="askany-kb-confirm") as kb_confirm:
                    kb_confirm_text = gr.Textbox(label=t["kb_confirm_label"], max_lines=1, scale=3,
                                                 elem_id="askany-kb-confirm-text")
                    kb_confirm_go = gr.Button(t["kb_confirm"], variant="stop", scale=1, elem_id="askany-kb-confirm-go")
                    kb_cancel = gr.Button(t["kb_cancel"], scale=1, elem_id="askany-kb-cancel")
                kb_status = gr.Markdown("", elem_id="askany-kb-status")
                gr.Markdown(f"### {escape_markdown(t['upload_title'])}")
                with gr.Row():
                    files = gr.File(file_count="multiple", label=t["upload_files"], elem_id="askany-files",
                                    scale=3)
                    with gr.Column(scale=2):
                        upload_kb = gr.Dropdown([settings.default_kb], value=settings.default_kb,
                                                allow_custom_value=True, label=t["upload_kb"],
                                                elem_id="askany-upload-kb")
                        upload_tags = gr.Textbox(label=t["upload_tags"])
                        upload_button = gr.Button(t["upload_button"], variant="primary")
                upload_status = gr.Markdown("")
                upload_progress = gr.HTML("", elem_id="askany-upload-progress", js_on_load=None)
                upload_job = gr.State(None)
                upload_timer = gr.Timer(1.0, active=False)
                # The one-request upload (streams its table until done) for API clients; the page's button
                # starts a background job instead and polls it.
                upload_sync = gr.Button(visible=False)
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
        answers = [
            send.click(ui.respond, chat_inputs, chat_outputs, api_name="respond", concurrency_limit=2),
            question.submit(ui.respond, chat_inputs, chat_outputs, api_name="respond_on_enter",
                            api_visibility="private", concurrency_limit=2),
            regenerate.click(ui.regenerate, chat_inputs[1:], chat_outputs, api_name="regenerate",
                             concurrency_limit=2),
            clear.click(ui.clear, None, chat_outputs, api_name="clear"),
        ]
        for number, event in enumerate(answers):
            event.then(ui.snapshot, [conversation], [saved], **private(f"save_conversation_{number}"))
        chatbot.like(ui.rate, [conversation], [feedback_box, feedback_note, conversation], api_name="rate") \
            .then(ui.snapshot, [conversation], [saved], **private("save_conversation_rated"))
        feedback_send.click(ui.comment, [feedback_text, conversation], [feedback_text, feedback_box, feedback_note],
                            api_name="comment")
        view_go.click(ui.view_source, [view_chunk], [viewer, viewed], api_name="view_source") \
            .then(lambda: gr.update(open=True), None, [viewer_box], **private("open_viewer"))
        viewer_full.click(ui.view_document, [viewed], [viewer, viewed], api_name="view_document")
        # Not queued behind the answers: a stop has to arrive while one streams.
        stop.click(ui.stop, None, None, api_name="stop", queue=False)

        lists = [kb_table, doc_table, doc_pick]
        upload_event = upload_sync.click(ui.upload, [files, upload_kb, upload_tags],
                                         [upload_status, upload_table], api_name="upload")
        upload_button.click(ui.start_upload, [files, upload_kb, upload_tags],
                            [upload_progress, upload_table, upload_job, upload_timer], api_name="start_upload")
        upload_timer.tick(ui.upload_progress, [upload_job], [upload_progress, upload_table, upload_timer],
                          **private("upload_progress")) \
            .then(ui.refresh_after_upload, [upload_job, docs_kb], [kb_table, doc_table, doc_pick, banner, kbs, tags,
                                                                   upload_kb, docs_kb, kb_pick],
                  **private("refresh_after_upload"))
        refreshed_choices = [banner, kbs, tags, upload_kb, docs_kb, kb_pick]
        upload_event.then(ui.list_documents, [docs_kb], lists, **private("documents_after_upload")) \
            .then(ui.load_page, [upload_kb], refreshed_choices, **private("choices_after_upload"))
        kb_refreshed = [*lists, *refreshed_choices]
        kb_create.click(ui.create_kb, [kb_new], [kb_status, kb_new, *kb_refreshed], api_name="create_kb")
        kb_new.submit(ui.create_kb, [kb_new], [kb_status, kb_new, *kb_refreshed], **private("create_kb_on_enter"))
        kb_delete.click(ui.ask_delete_kb, [kb_pick], [kb_status, kb_confirm, kb_confirm_text],
                        **private("ask_delete_kb"))
        kb_cancel.click(ui.cancel_delete_kb, None, [kb_status, kb_confirm, kb_confirm_text],
                        **private("cancel_delete_kb"))
        kb_confirm_go.click(ui.confirm_delete_kb, [kb_pick, kb_confirm_text],
                            [kb_status, kb_confirm, kb_confirm_text, *kb_refreshed], api_name="delete_kb")
        refresh_docs.click(ui.list_documents, [docs_kb], lists, api_name="list_documents")
        docs_kb.change(ui.list_documents, [docs_kb], lists, **private("documents_of_kb"))
        delete.click(ui.delete_document, [docs_kb, doc_pick], [delete_status, *lists],
                     api_name="delete_document") \
            .then(ui.load_page, [upload_kb], refreshed_choices, **private("choices_after_delete"))
        refresh_status.click(ui.refresh_status, None, [status_html, banner], api_name="refresh_status")

        blocks.load(ui.restore, [saved], [chatbot, sources, conversation], **private("restore_conversation"))
        blocks.load(ui.load_page, None, refreshed_choices, api_name="load_page") \
            .then(ui.list_documents, [docs_kb], lists, **private("documents_on_load")) \
            .then(ui.refresh_status, None, [status_html, banner], **private("status_on_load"))
    return blocks


def warm_up(service: Service) -> None:
    """Load the tokenizer and models in the background, so the first question is not the slow one."""
    started = time.perf_counter()
    try:
        service.warm_up()
    except Exception:  # a warm-up failure must not take the page down; the first request reports it
        log.exception("Warming up the models failed")
    log.info("Models warmed up in %.1f s", time.perf_counter() - started)
