"""The one API the front doors call: the CLI (askany/cli), the chat page (askany/web) and the HTTP server.

Each door parses its own input and renders its own output; everything in between (asking,
retrieving, ingesting paths or uploads, listing and deleting documents, knowledge bases and
tags, status, evaluation, index maintenance) happens here, with the same rules for all of
them. Nothing starts until it is used: the database opens on the first call that needs it,
models load on the first question that needs them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from askany.context import AskAny
from askany.core.config import Settings, get_settings
from askany.core.errors import AskAnyError, ModelUnavailableError
from askany.core.text import estimate_tokens
from askany.generation import GenerationOptions, Generator, ThinkingSplitter
from askany.ingestion.pipeline import FileResult, Ingestor, IngestReport
from askany.retrieval.evaluation import EvalQuery, SetupScore, eval_kb_name, read_queries
from askany.retrieval.evaluation import evaluate as run_evaluation
from askany.retrieval.rerank import rerank_scores
from askany.retrieval.retriever import Mode, RetrievalResult
from askany.service.encoders import Embeddings, embed, embedding_dimension_of
from askany.service.feedback import FeedbackError, checked_comment, rating_value, stored_text, write_eval_set
from askany.service.jobs import IngestJob, IngestJobs
from askany.service.knowledge_bases import KbDeleteResult, KnowledgeBaseError, check_kb_name
from askany.service.qa import QA, QAResult
from askany.service.uploads import UploadError, kb_folder_name, remove_uploaded_copy, store_upload
from askany.storage.feedback import FeedbackStore
from askany.storage.store import SearchFilter, StoredChunk

log = logging.getLogger(__name__)


DOCUMENT_CHUNKS_SHOWN = 5000  # a whole document shown at once: its first this many chunks


@dataclass
class PassageContext:
    """A chunk and chunks of its document around it (or all of them), in document order."""

    chunk: StoredChunk
    chunks: list[StoredChunk]
    total: int  # chunks the document has
    whole: bool

    def pieces(self) -> list[tuple[StoredChunk, str]]:
        """(chunk, its text without the start it shares with the chunk before it): the chunker's
        overlap is shown once, so consecutive pieces read as the document's text."""
        out: list[tuple[StoredChunk, str]] = []
        previous: StoredChunk | None = None
        for chunk in self.chunks:
            text = chunk.text
            if previous is not None and chunk.position == previous.position + 1:
                text = text[shared_overlap(previous.text, text):]
            out.append((chunk, text))
            previous = chunk
        return out


def shared_overlap(before: str, after: str, longest: int = 2000) -> int:
    """Length of the longest end of `before` that `after` starts with (the chunk overlap)."""
    for size in range(min(len(before), len(after), longest), 0, -1):
        if before.endswith(after[:size]):
            return size
    return 0


@dataclass
class DeleteResult:
    deleted: bool
    kb: str
    source: str
    upload_removed: bool = False


class Service:
    """AskAny for a front door: one per process, shared by every request and session."""

    def __init__(self, settings: Settings | None = None, app: AskAny | None = None, qa: QA | None = None):
        """`app` and `qa` replace the defaults (tests give a QA with a scripted answerer)."""
        self.app = app or (qa.app if qa is not None else AskAny(settings or get_settings()))
        self.settings = self.app.settings
        self._qa = qa
        self.jobs = IngestJobs(self.ingest)  # background ingestion (uploads from the page)
        self._kb_lock = threading.Lock()  # a kb is not deleted while an upload into it is being started

    @property
    def qa(self) -> QA:
        if self._qa is None:
            self._qa = QA(self.app)
        return self._qa

    # ------------------------------------------------------------ asking
    def ask_stream(self, question: str, **options: Any) -> Iterator[tuple[str, Any]]:
        """("thinking" | "answer", text piece) while the answer streams, then ("done", QAResult)."""
        return self.qa.ask_stream(question, **options)

    def ask(self, question: str, **options: Any) -> QAResult:
        return self.qa.ask(question, **options)

    def check_question(self, kbs: list[str] | None = None, tags: list[str] | None = None) -> None:
        """Raise QueryError (one sentence naming the fix) when a question to these knowledge bases and
        tags could not be answered: an unknown one, or nothing stored. What ask checks first, alone."""
        self.qa.check(kbs, tags)

    def retrieve(self, query: str, *, mode: Mode = "hybrid", top_k: int | None = None, rerank: bool = True,
                 kbs: list[str] | None = None, tags: list[str] | None = None,
                 faq: bool | None = None) -> RetrievalResult:
        retriever = self.qa.retriever
        retriever.check_filters(kbs, tags)
        return retriever.retrieve(query, mode=mode, top_k=top_k, rerank=rerank,
                                  search_filter=SearchFilter(kbs=kbs or None, tags=tags or None, faq=faq))

    def highlight_terms(self, question: str) -> list[str]:
        """Terms of a question worth highlighting in passages: words and character pairs, no single characters."""
        from askany.ingestion.keywords import STOPWORDS, WORD_PREFIX

        found = {term.removeprefix(WORD_PREFIX) for term in self.app.analyzer.terms(question)}
        return sorted((t for t in found if len(t) >= 2 and t not in STOPWORDS), key=lambda t: (-len(t), t))

    def rerank(self, query: str, documents: list[str], top_n: int | None = None) -> list[tuple[int, float]]:
        """(index into `documents`, cross-encoder score), best first, the best `top_n` of them.

        Raises ModelUnavailableError (one sentence naming the fix) when the reranker is off or missing.
        """
        scores = rerank_scores(self.app, query, documents)
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        return [(index, scores[index]) for index in order[:top_n if top_n is not None else len(order)]]

    def generator(self) -> Generator | None:
        """The LLM backend (local transformers or an OpenAI-compatible server), loaded on first use;
        None when LLM_BACKEND=none. Raises ModelUnavailableError when it cannot load."""
        return self.qa.answerer.generator()

    def embed(self, texts: list[str]) -> Embeddings:
        """Vectors from the embedding model, as AskAny stores and searches them (batched by
        EMBEDDING_BATCH_SIZE); raises ModelUnavailableError when it is off or missing."""
        return embed(self.app, texts)

    def embedding_dimension(self) -> int:
        return embedding_dimension_of(self.app)

    def chat_stream(self, messages: list[dict[str, str]], *, thinking: bool | None = None,
                    generation: GenerationOptions | None = None) -> Iterator[tuple[str, str]]:
        """Plain chat with the LLM, no retrieval: ("thinking" | "answer", text piece) as it writes.

        Raises ModelUnavailableError when no LLM is configured or it cannot load.
        """
        generator = self.generator()
        if generator is None:
            raise ModelUnavailableError("llm", "No LLM is configured (LLM_BACKEND=none); set LLM_BACKEND to "
                                        "transformers or openai")
        enable = self.settings.llm_enable_thinking if thinking is None else thinking
        splitter = ThinkingSplitter()
        for piece in generator.stream(messages, enable, generation):
            yield from splitter.feed(piece)
        yield from splitter.finish()

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` for the LLM (its tokenizer, or an estimate without one)."""
        try:
            generator = self.generator()
        except ModelUnavailableError:
            generator = None
        return generator.count_tokens(text) if generator is not None else estimate_tokens(text)

    # ------------------------------------------------------------ ingesting
    def ingest(self, paths: list[Path], kb: str | None = None, tags: list[str] | None = None, sync: bool = False,
               progress: bool = False, on_result: Callable[[FileResult], None] | None = None) -> IngestReport:
        kb = check_kb_name(self.kb_name(kb))
        return Ingestor(self.app).run(paths, kb=kb, tags=tags, sync=sync, progress=progress, on_result=on_result)

    def store_uploads(self, files: list[Path], kb: str | None) -> tuple[dict[str, str], list[FileResult]]:
        """Copy uploaded files into UPLOAD_DIR/<kb>/ under safe names.

        Returns ({stored path: name as uploaded}, results for the files refused, with the reason).
        """
        kb = check_kb_name(self.kb_name(kb))
        accepted: dict[str, str] = {}
        refused: list[FileResult] = []
        for path in files:
            try:
                accepted[str(store_upload(self.settings.upload_dir, kb, path, self.settings.upload_max_mb))] = path.name
            except UploadError as error:
                refused.append(FileResult(path.name, "failed", reason=str(error)))
        return accepted, refused

    def start_upload(self, files: list[Path], kb: str | None, tags: list[str] | None = None) -> IngestJob:
        """Store uploads (as `store_uploads`) and ingest them in the background; returns the job at once."""
        kb = check_kb_name(self.kb_name(kb))
        with self._kb_lock:
            stored, refused = self.store_uploads(files, kb)
            return self.jobs.start(stored, refused, kb, list(tags or []))

    def ingest_job(self, job_id: str | None) -> IngestJob | None:
        """A background ingestion job started by this process (None when unknown or long finished)."""
        return self.jobs.get(job_id)

    def kb_name(self, kb: str | None) -> str:
        return (kb or "").strip() or self.settings.default_kb

    # ------------------------------------------------------------ documents, knowledge bases, tags
    def knowledge_bases(self) -> list[dict[str, Any]]:
        return self.app.store.knowledge_bases()

    def kb_names(self) -> list[str]:
        return [kb["kb"] for kb in self.knowledge_bases()]

    def create_kb(self, name: str | None) -> str:
        """Create an empty knowledge base (listed, choosable, an upload target) and return its name.

        Raises KnowledgeBaseError: a name that breaks `check_kb_name`, or one that already exists.
        """
        kb = check_kb_name(name)
        if not self.app.store.create_kb(kb):
            raise KnowledgeBaseError("exists", f"A knowledge base named {kb!r} already exists; choose another "
                                     "name", kb)
        log.info("Created knowledge base %s", kb)
        return kb

    def delete_kb(self, name: str | None) -> KbDeleteResult:
        """Delete a whole knowledge base: its documents, chunks, vectors, keyword postings, its record
        and the uploaded copies of its documents, in one transaction (the files after it commits).

        Raises KnowledgeBaseError when it does not exist, or while an upload into it is being ingested
        by this process (deleting then would race the upload's writes: wait for it to finish).
        """
        kb = (name or "").strip()
        if not kb or kb not in self.kb_names():
            raise KnowledgeBaseError("not_found", f"There is no knowledge base {kb!r}; see --check-db for the "
                                     "list", kb)
        with self._kb_lock:
            if self.jobs.running(kb):
                raise KnowledgeBaseError("busy", f"Documents are being uploaded into {kb!r}; delete it once "
                                         "the upload has finished", kb)
            existed, sources, chunks = self.app.store.delete_kb(kb)
        result = KbDeleteResult(kb, existed, len(sources), chunks, sources=sources)
        for source in sources:
            try:
                result.uploads_removed += remove_uploaded_copy(self.settings.upload_dir, source)
            except OSError as error:
                log.warning("Could not remove the uploaded copy %s: %s", source, error)
        folder = self.settings.upload_dir.expanduser() / kb_folder_name(kb)
        try:
            folder.rmdir()  # only when empty: files put there by hand stay
        except OSError:
            pass
        log.info("Deleted knowledge base %s: %d documents, %d chunks", kb, len(sources), chunks)
        return result

    def tags(self) -> list[str]:
        return self.app.store.known_tags()

    def list_documents(self, kb: str | None = None) -> list[dict[str, Any]]:
        return self.app.store.list_documents(kb or None)

    def delete_document(self, kb: str | None, source: str) -> DeleteResult:
        """Delete one document; an uploaded one loses its stored copy too (whichever door asks).

        With no knowledge base given, the document's own is used when exactly one holds it.
        """
        source = source.strip()
        if not kb:
            owners = sorted({d["kb"] for d in self.list_documents() if d["source"] == source})
            if len(owners) != 1:
                raise AskAnyError(f"{source} is in {len(owners)} knowledge bases ({', '.join(owners) or 'none'}); "
                                  "name the knowledge base (--kb, or kb in the request)")
            kb = owners[0]
        result = DeleteResult(self.app.store.delete_document(kb, source), kb, source)
        if result.deleted:
            try:
                result.upload_removed = remove_uploaded_copy(self.settings.upload_dir, source)
            except OSError as error:
                log.warning("Could not remove the uploaded copy %s: %s", source, error)
        return result

    # ------------------------------------------------------------ reading sources in their documents
    def passage_context(self, chunk_id: int, radius: int = 2) -> PassageContext:
        """A retrieved chunk among its neighbours in its document (`radius` chunks each side)."""
        chunk, chunks, total = self.app.store.chunks_of_document(int(chunk_id), radius=max(0, int(radius)))
        if chunk is None:
            raise AskAnyError("That passage is no longer stored (its document was deleted or re-ingested); "
                              "ask the question again")
        return PassageContext(chunk, chunks, total, whole=False)

    def document_text(self, chunk_id: int) -> PassageContext:
        """The whole stored text of the document a chunk belongs to, chunk by chunk (overlaps removed)."""
        chunk, chunks, total = self.app.store.chunks_of_document(int(chunk_id), limit=DOCUMENT_CHUNKS_SHOWN)
        if chunk is None:
            raise AskAnyError("That passage is no longer stored (its document was deleted or re-ingested); "
                              "ask the question again")
        return PassageContext(chunk, chunks, total, whole=True)

    # ------------------------------------------------------------ feedback
    def record_feedback(self, rating: object, question: str, answer: str, sources: list[dict[str, Any]],
                        options: dict[str, Any] | None = None, comment: str | None = None) -> int:
        """Store 👍/👎 on an answer with its question, sources and the settings used; returns its id.

        Raises FeedbackError (one sentence) for a bad rating or a comment that is too long or not text.
        """
        value, text = rating_value(rating), checked_comment(comment)
        used = {**(options or {}), "llm_backend": self.settings.llm_backend, "llm_model": self.settings.llm_model,
                "embedding_model": self.settings.embedding_model_name,
                "reranker_model": self.settings.reranker_model_name}
        return self.feedback.add(value, stored_text(question), stored_text(answer), sources, used, text)

    def update_feedback(self, feedback_id: int, rating: object | None = None, comment: str | None = None) -> None:
        """Change the rating and/or the comment of stored feedback."""
        value = rating_value(rating) if rating is not None else None
        text = checked_comment(comment) if comment is not None else None
        if not self.feedback.update(feedback_id, value, text):
            raise FeedbackError(f"There is no feedback {feedback_id}; rate the answer again")

    def export_feedback(self, path: Path, rating: object | None = None) -> tuple[int, int]:
        """Feedback (all, or one rating) as a queries.jsonl evaluation set; (written, left out: no source)."""
        records = self.feedback.list(rating_value(rating) if rating is not None else None)
        return write_eval_set(records, path)

    @property
    def feedback(self) -> FeedbackStore:
        return FeedbackStore(self.app.db)

    # ------------------------------------------------------------ status and maintenance
    def status(self, db_probe: bool = True) -> dict[str, Any]:
        """What --check reports, plus which model roles this process has loaded."""
        from askany.models.registry import ROLES
        from askany.service.status import collect_status

        status = collect_status(self.settings, db_probe=db_probe)
        status["loaded"] = {role: self.app.models.loaded(role) for role in ROLES}
        for role, state in status["models"].items():  # a loaded encoder says what it really runs on
            running = getattr(self.app.models.value(role), "askany_runtime", None)
            if running is not None and state.get("runtime") is not None:
                state["runtime"] = running.as_dict()
        return status

    def model_problems(self) -> dict[str, str]:
        """Role -> why it is unavailable, for the roles the settings use (nothing is loaded to find out)."""
        from askany.models.registry import ROLES, role_status

        problems = {}
        for role in ROLES:
            error = self.app.models.error(role)
            if error is not None:
                problems[role] = str(error)
                continue
            state = role_status(self.settings, role, probe=False, runtime=False)  # a server's failures show when asked
            if not state.ok and state.name:  # an unnamed role (HanLP unset) is not a problem
                problems[role] = state.problem
        if self.settings.llm_backend != "transformers":
            problems.pop("llm", None)
        return problems

    def database_report(self) -> dict[str, Any]:
        """What --check-db shows: counts per knowledge base, vectors, indexes, samples."""
        store = self.app.store
        return {
            "knowledge_bases": store.knowledge_bases(),
            "vectors_made_by": store.vector_model(),
            "chunks_awaiting_vectors": store.count_awaiting_vectors(),
            "hnsw_index": store.has_hnsw_index(),
            "keyword_analyzer": self.app.analyzer.name,
            "keyword_index": store.keywords.needs_rebuild() or "consistent with the chunks",
            "samples": [{"source": c.source, "heading_path": c.heading_path, "text": c.text[:120]}
                        for c in store.sample_chunks(3)],
        }

    def reembed(self, progress: bool = False) -> IngestReport:
        """Drop every vector and embed all chunks again with EMBEDDING_MODEL (checked first)."""
        # Fail now, before dropping anything, when the model is missing (or its server does not answer).
        embedding_dimension_of(self.app, self.app.models.embedding())
        self.app.store.drop_vectors()
        return Ingestor(self.app).run([], progress=progress)

    def rebuild_vector_index(self) -> bool:
        return self.app.store.rebuild_hnsw_index(self.settings.hnsw_m, self.settings.hnsw_ef_construction)

    def evaluate(self, queries: Path | list[EvalQuery], docs: Path | None = None, kb: str | None = None,
                 progress: bool = False, setups: list[str] | None = None) -> tuple[list[SetupScore], str | None,
                                                                                  IngestReport | None]:
        """Retrieval quality on a question set; with `docs`, that folder is ingested into its own kb first."""
        questions = read_queries(queries) if isinstance(queries, Path) else queries
        report = None
        if docs is not None:
            if not docs.is_dir():
                raise AskAnyError(f"--docs {docs} is not a folder")
            kb = kb or eval_kb_name(docs)
            report = self.ingest([docs], kb=kb, progress=progress)
        return run_evaluation(self.app, questions, kb=kb, setups=setups, progress=progress), kb, report

    def warm_up(self) -> None:
        """Open the database and load the keyword analyzer and the models now, not on the first question."""
        self.app.store.ensure_keyword_index()
        self.app.analyzer.terms("预热")
        for role in ("embedding", "reranker"):
            self.app.models.optional(role)
        if self.settings.llm_backend == "transformers":
            self.app.models.optional("llm")
