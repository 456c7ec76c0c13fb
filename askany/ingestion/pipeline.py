"""Batch ingestion: files -> LlamaIndex documents and nodes -> terms and vectors -> the store.

Incremental: a file whose bytes and pipeline settings are unchanged costs no
parsing and no model call. Crash-safe: documents are written in groups, each
group in one transaction, after their vectors are computed, so a killed run
leaves every document either in its old or its new state; running again
finishes the work. With no embedding model, chunks are stored without vectors
(keyword search works) and a later run with the model fills them in.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from askany.context import AskAny
from askany.core.errors import AskAnyError, ModelUnavailableError
from askany.core.notices import Notice
from askany.core.text import is_utf8
from askany.ingestion.chunking import char_count_tokens, split_document
from askany.ingestion.discovery import absolute, discover
from askany.ingestion.loaders import FileSkipped, LoadedFile, load_file, ocr
from askany.ingestion.loaders.limits import ParseLimits
from askany.ingestion.loaders.registry import unsupported_reason, uses_ocr
from askany.models.registry import embedding_dimension
from askany.storage.store import ChunkRecord, DocumentClaims, DocumentRecord

log = logging.getLogger(__name__)

# "claimed": another ingestion run (another process or host) was storing the file at the same time
Status = Literal["new", "changed", "unchanged", "failed", "skipped", "removed", "claimed"]
PIPELINE_VERSION = "1"
KEYWORD_ONLY_GROUP_CHUNKS = 4096
CLAIM_BATCH = 64  # files claimed in one round trip


@dataclass
class FileResult:
    path: str
    status: Status
    chunks: int = 0
    reason: str = ""


@dataclass
class IngestReport:
    kb: str
    results: list[FileResult] = field(default_factory=list)
    chunks_written: int = 0
    vectors_written: int = 0
    awaiting_vectors: int = 0
    embedding_note: str = ""
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0

    failed_count: int = 0

    def count(self, status: Status) -> int:
        return sum(1 for result in self.results if result.status == status)

    @property
    def failed(self) -> list[FileResult]:
        return [result for result in self.results if result.status == "failed"]

    @property
    def chunks_per_second(self) -> float:
        return self.chunks_written / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Pending:
    result: FileResult
    record: DocumentRecord


@dataclass
class _Piece:
    """A chunk of a file as cut: its text, heading path, extra metadata ({"page": 3}, an FAQ's
    question and answer), tags, and whether it is an FAQ entry."""

    text: str
    heading_path: list[str]
    metadata: dict[str, Any]
    tags: list[str]
    is_faq: bool


@dataclass
class ParseTask:
    """A file whose bytes or settings changed since it was stored: to be parsed, chunked and analyzed."""

    path: Path
    source: str
    data: bytes | None  # None: not read yet (a file never stored needs no comparison, so its worker reads it)
    content_hash: str
    stored: bool


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def node_id_for(kb: str, source: str, content_hash: str, position: int) -> str:
    """Deterministic, so a re-run after a crash writes exactly the nodes an uninterrupted run would."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"askany:{kb}:{source}:{content_hash}:{position}"))


class Ingestor:
    """Turns files into stored, searchable chunks for one knowledge base."""

    def __init__(self, app: AskAny):
        self.app = app
        self.settings = app.settings
        self._count_tokens: Callable[[str], int] | None = None
        self.limits = ParseLimits.from_settings(self.settings)
        self.show_progress = False  # OCR's page bars, for a run with progress (set by run())

    # ------------------------------------------------------------ building blocks
    @property
    def count_tokens(self) -> Callable[[str], int]:
        """Counts tokens with the embedding model's own tokenizer, or estimates without it."""
        if self._count_tokens is None:
            tokenizer = self.app.models.optional("embedding_tokenizer") if self.settings.embedding_enabled else None
            if tokenizer is None:
                log.info("Sizing chunks by an estimate: the embedding tokenizer is not available")
                self._count_tokens = char_count_tokens
            else:
                def count(text: str) -> int:
                    return len(tokenizer(text, add_special_tokens=False)["input_ids"])
                self._count_tokens = count
        return self._count_tokens

    def fingerprint(self, kb: str, tags: list[str]) -> str:
        """Everything besides the file's bytes that decides its chunks and terms; a change re-ingests the file.

        The embedding model is left out on purpose: chunks made without it (sized by an estimate) keep
        their text and only get their vectors filled in later, and a model change is handled by --reembed.
        """
        parts = [PIPELINE_VERSION, kb, ",".join(sorted(tags)), self.app.analyzer.name,
                 str(self.settings.chunk_size), str(self.settings.chunk_overlap)]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]

    def file_fingerprint(self, fingerprint: str, path: Path) -> str:
        """The run's fingerprint, and for a format OCR may read (PDFs, images) whether OCR is on: a
        PDF stored with its scanned pages unread is read again once OCR is turned on. (PDFs stored
        before OCR existed are read again once too, and so get their page numbers.)"""
        if not uses_ocr(path.suffix.lower()):
            return fingerprint
        return hashlib.sha256(f"{fingerprint}\x1focr={self.limits.ocr}".encode()).hexdigest()[:16]

    def chunk_pieces(self, loaded: LoadedFile, tags: list[str]) -> list[_Piece]:
        """One file's chunks, before their keyword terms: what is stored, searched and cited."""
        if loaded.faqs:
            return [_Piece(f"问：{entry.question}\n答：{entry.answer}", [],
                           {"question": entry.question, "answer": entry.answer},
                           sorted(set(tags) | set(entry.tags)), True) for entry in loaded.faqs]
        return [_Piece(chunk.text, list(chunk.heading_path),
                       {chunk.location[0]: chunk.location[1]} if chunk.location else {},  # {"page": 3}
                       tags, False)
                for chunk in split_document(loaded.text, self.count_tokens, self.settings.chunk_size,
                                            self.settings.chunk_overlap)]

    def _record(self, loaded: LoadedFile, kb: str, tags: list[str], content_hash: str, fingerprint: str,
                source: str) -> DocumentRecord:
        # Rows straight from the pieces, not through LlamaIndex TextNodes: a worker process then never
        # imports LlamaIndex (1.5 s of CPU each) and no node is validated only to be taken apart again.
        # The rows are the ones storage.nodes.chunk_records makes of the same chunks as nodes.
        pieces = self.chunk_pieces(loaded, tags)
        bags = self.app.analyzer.bags([piece.text for piece in pieces])
        chunks = [ChunkRecord(node_id=node_id_for(kb, source, content_hash, position), position=position,
                              text=piece.text, heading_path=piece.heading_path, tags=piece.tags,
                              is_faq=piece.is_faq, terms=bag, metadata=piece.metadata)
                  for position, (piece, bag) in enumerate(zip(pieces, bags, strict=True))]
        return DocumentRecord(kb=kb, source=source, title=loaded.title, kind="faq" if loaded.faqs else "doc",
                              content_hash=content_hash, fingerprint=fingerprint, tags=tags,
                              encoding=loaded.encoding, chunks=chunks)

    # ------------------------------------------------------------ the run
    def run(self, paths: list[Path], kb: str | None = None, tags: list[str] | None = None,
            sync: bool = False, progress: bool = True,
            on_result: Callable[[FileResult], None] | None = None) -> IngestReport:
        kb = (kb or self.settings.default_kb).strip()
        if not kb:
            raise AskAnyError("The knowledge base name is empty; pass --kb NAME")
        tags = sorted({tag.strip() for tag in tags or [] if tag.strip()})
        self.show_progress = progress
        started = time.perf_counter()
        report = IngestReport(kb=kb)
        found = discover(paths, self.settings.follow_symlinks)
        files = found.files
        for path in found.missing:
            self._note(report, FileResult(str(path), "failed", reason="no such file or folder"), on_result)
        for path, reason in found.skipped:
            self._note(report, FileResult(_printable(path), "skipped", reason=reason), on_result)

        store = self.app.store
        repaired = store.ensure_keyword_index()
        if repaired:
            report.notices.append(repaired)
        embedder = _LazyEmbedder(self, report)  # loaded when the first chunk needs a vector, not before
        if embedder.expected():  # a model change is said at once, even when no file needs a vector
            store.check_vector_model(self.settings.embedding_model_name)
        states = store.document_states(kb)
        fingerprint = self.fingerprint(kb, tags)
        max_bytes = int(self.settings.max_file_size_mb * 1024 * 1024)
        pending: list[_Pending] = []
        pending_chunks = 0
        # A transaction per group: with vectors, a crash loses at most a group of model work; without
        # them a group costs milliseconds, and bigger groups mean fewer keyword segments to merge.
        group = self.settings.vector_group_chunks if embedder.expected() else max(
            self.settings.vector_group_chunks, KEYWORD_ONLY_GROUP_CHUNKS)

        from tqdm import tqdm

        from askany.ingestion.workers import parse_all

        examined = (self._examine(path, fingerprint, max_bytes, states.get(str(path))) for path in files)
        claims = DocumentClaims(store.db)
        groups = _GroupWriter(self, embedder, report, on_result, lambda sources: claims.release(kb, sources))
        done: list[str] = []  # claimed files finished since the last group was written
        try:
            with tqdm(total=len(files), unit="file", desc=f"Ingesting into {kb}", disable=not progress,
                      dynamic_ncols=True) as bar:
                for item in parse_all(self, self._claimed(examined, kb, fingerprint, claims), kb, tags,
                                      fingerprint):
                    if isinstance(item, FileResult):
                        self._note(report, item, on_result)
                        if item.status == "failed":
                            done.append(item.path)
                    else:
                        pending.append(item)
                        pending_chunks += len(item.record.chunks)
                        if pending_chunks >= group:
                            groups.add(pending, done)
                            pending, pending_chunks, done = [], 0, []
                    bar.update(1)
                    if progress:  # counted as it goes: recounting the results per file is quadratic
                        bar.set_postfix(chunks=report.chunks_written, failed=report.failed_count, refresh=False)
                groups.add(pending, done)
                groups.finish()
        finally:
            claims.close()  # every claim ends, also when the run is interrupted

        report.vectors_written += self._fill_missing_vectors(embedder, progress)
        # After a first load (or one that was stopped): built once over all vectors, not one by one.
        if store.ensure_vector_index(self.settings.hnsw_m, self.settings.hnsw_ef_construction):
            log.info("Built the vector index over the stored vectors")
        if sync:
            self._sync(kb, paths, files, states, report, on_result)
        report.awaiting_vectors = store.count_awaiting_vectors()
        report.seconds = time.perf_counter() - started
        return report

    def _claimed(self, examined: Iterator[FileResult | ParseTask], kb: str, fingerprint: str,
                 claims: DocumentClaims) -> Iterator[FileResult | ParseTask]:
        """The examined files, with each task claimed first: a file another run holds is left to it
        ("claimed"), and one another run stored since it was examined is looked at again."""
        batch: list[FileResult | ParseTask] = []
        tasks = 0
        for item in examined:
            batch.append(item)
            tasks += isinstance(item, ParseTask)
            if tasks >= CLAIM_BATCH:
                yield from self._claim_batch(batch, kb, fingerprint, claims)
                batch, tasks = [], 0
        yield from self._claim_batch(batch, kb, fingerprint, claims)

    def _claim_batch(self, items: list[FileResult | ParseTask], kb: str, fingerprint: str,
                     claims: DocumentClaims) -> Iterator[FileResult | ParseTask]:
        sources = [item.source for item in items if isinstance(item, ParseTask)]
        won = claims.claim(kb, sources)
        now = self.app.store.document_states_of(kb, sorted(won)) if won else {}
        unchanged_now: list[str] = []
        for item in items:
            if isinstance(item, ParseTask) and item.source not in won:
                item = FileResult(item.source, "claimed", reason="another ingestion run was storing it")
            elif isinstance(item, ParseTask) and item.source in now:
                # Another run may have stored it since this one looked: compare with what is stored now.
                current = now[item.source]
                if not item.stored:
                    item = self._examine(item.path, fingerprint, 1 << 62, current)  # its size was checked
                elif current == (item.content_hash, self.file_fingerprint(fingerprint, item.path)):
                    item = FileResult(item.source, "unchanged")
                if isinstance(item, FileResult):
                    unchanged_now.append(item.path)
            yield item
        claims.release(kb, unchanged_now)

    def _note(self, report: IngestReport, result: FileResult,
              on_result: Callable[[FileResult], None] | None) -> None:
        if result.status == "failed":
            log.warning("Skipped %s: %s", result.path, result.reason)
            report.failed_count += 1
        report.results.append(result)
        if on_result is not None:
            on_result(result)

    def _embedder(self, report: IngestReport) -> Any | None:
        """The embedding model ready to write vectors, or None (with the reason in the report)."""
        if not self.settings.embedding_enabled:
            report.embedding_note = Notice("embedding_off")
            return None
        model = self.app.embedding_model()
        if model is None:
            error = self.app.models.error("embedding")
            report.embedding_note = Notice("no_vectors", reason=error)
            return None
        try:
            dimension = embedding_dimension(model)  # a server's model is asked once, here
        except ModelUnavailableError as error:
            report.embedding_note = Notice("no_vectors", reason=error)
            return None
        self.app.store.ensure_vector_table(self.settings.embedding_model_name, dimension)
        return model

    def _examine(self, path: Path, fingerprint: str, max_bytes: int,
                 stored: tuple[str, str] | None) -> FileResult | ParseTask:
        """Read a file and compare it with what is stored: a result (unchanged, skipped, failed) or a task."""
        source = str(path)
        if not is_utf8(source):  # a name from another system's encoding: Postgres cannot store it as text
            return FileResult(_printable(path), "failed", reason="the file name is not valid UTF-8: rename the file")
        if (unsupported := unsupported_reason(path.suffix.lower(), self.limits)) is not None:
            return FileResult(source, "skipped", reason=unsupported)
        try:
            size = path.stat().st_size
            if size > max_bytes:
                return FileResult(source, "failed", reason=f"larger than the {self.settings.max_file_size_mb:g} MB "
                                                           f"limit (MAX_FILE_SIZE_MB)")
            if stored is None:
                return ParseTask(path, source, None, "", False)
            data = path.read_bytes()
        except OSError as error:
            return FileResult(source, "failed", reason=f"unreadable: {error.strerror or error}")
        content_hash = file_hash(data)
        if stored == (content_hash, self.file_fingerprint(fingerprint, path)):
            return FileResult(source, "unchanged")
        return ParseTask(path, source, data, content_hash, True)

    def parse(self, task: ParseTask, kb: str, tags: list[str], fingerprint: str) -> FileResult | _Pending:
        """A file's document record with its chunks and terms (here or in a worker process)."""
        data = task.data
        try:
            if data is None:
                data = task.path.read_bytes()
            with ocr.progress(self.show_progress):
                loaded = load_file(task.path, int(self.settings.max_file_size_mb * 1024 * 1024), data,
                                   self.limits)
        except OSError as error:
            return FileResult(task.source, "failed", reason=f"unreadable: {error.strerror or error}")
        except FileSkipped as error:
            return FileResult(task.source, "failed", reason=error.reason)
        record = self._record(loaded, kb, tags, task.content_hash or file_hash(data),
                              self.file_fingerprint(fingerprint, task.path), task.source)
        if not record.chunks:
            return FileResult(task.source, "failed", reason="no text to index")
        status: Status = "changed" if task.stored else "new"
        return _Pending(FileResult(task.source, status, chunks=len(record.chunks)), record)

    def _encode(self, embedder: Any, texts: list[str]) -> Any:
        return embedder.encode(texts, batch_size=self.settings.embedding_batch_size,
                               normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)

    def _fill_missing_vectors(self, lazy: _LazyEmbedder, progress: bool) -> int:
        """Vectors for chunks stored earlier without them (no model then, its server down, or after
        --reembed); the model is loaded only when some are missing. Each batch is claimed (see
        `ChunkStore.embed_awaiting`), so several processes doing this at once share the work."""
        store = self.app.store
        total = store.count_awaiting_vectors() if not lazy.stopped else 0
        embedder = lazy.get() if total else None
        if embedder is None:
            return 0
        from tqdm import tqdm

        written, previous = 0, None
        with tqdm(total=total, unit="chunk", desc="Embedding stored chunks", disable=not progress) as bar:
            while True:
                try:
                    done = store.embed_awaiting(self.settings.vector_group_chunks,
                                                lambda texts: self._encode(embedder, texts))
                except ModelUnavailableError as error:
                    lazy.stop(error)
                    break
                if not done or done == previous:  # the same batch again: its vectors could not be stored
                    break
                previous = done
                written += len(done)
                bar.update(len(done))
        return written

    def _sync(self, kb: str, roots: list[Path], files: list[Path], states: dict[str, tuple[str, str]],
              report: IngestReport, on_result: Callable[[FileResult], None] | None) -> None:
        """Remove documents under the given roots whose files are gone."""
        seen = {str(path) for path in files}
        prefixes = [str(absolute(root)) for root in roots]
        gone = [source for source in states if source not in seen and
                any(source == prefix or source.startswith(prefix.rstrip("/") + "/") for prefix in prefixes)]
        self.app.store.delete_documents(kb, gone)
        for source in gone:
            self._note(report, FileResult(source, "removed"), on_result)


class _GroupWriter:
    """Writes groups of parsed documents in order, each in one transaction once its vectors are in.

    With the model on a server, a group's vectors are asked for while the group before it is
    written, one group ahead, so the server and the database do not wait for each other (and the
    parsing workers keep going meanwhile). A local model computes them in this thread, in turn.
    """

    def __init__(self, ingestor: Ingestor, lazy: _LazyEmbedder, report: IngestReport,
                 on_result: Callable[[FileResult], None] | None, release: Callable[[list[str]], None]):
        self._ingestor, self._lazy, self._report = ingestor, lazy, report
        self._on_result, self._release = on_result, release
        self._waiting: tuple[list[_Pending], Future | None, list[str]] | None = None

    def add(self, pending: list[_Pending], done: list[str]) -> None:
        """Take a group (and the claimed files finished with it, released once it is written)."""
        job = self._vectors(pending) if pending else None
        self._write_waiting()
        self._waiting = (pending, job, done)

    def finish(self) -> None:
        self._write_waiting()

    def _vectors(self, pending: list[_Pending]) -> Future | None:
        embedder = self._lazy.get()
        if embedder is None:
            return None
        texts = [chunk.text for item in pending for chunk in item.record.chunks]
        job: Future = Future()

        def run() -> None:
            try:
                job.set_result(self._ingestor._encode(embedder, texts))
            except BaseException as error:  # noqa: BLE001 - raised where the vectors are awaited
                job.set_exception(error)

        if getattr(embedder, "remote", False):  # a daemon: an interrupted run does not wait for it
            threading.Thread(target=run, name="askany-group-vectors", daemon=True).start()
        else:
            run()
        return job

    def _write_waiting(self) -> None:
        if self._waiting is None:
            return
        pending, job, done = self._waiting
        self._waiting = None
        report = self._report
        if job is not None:
            chunks = [chunk for item in pending for chunk in item.record.chunks]
            try:
                vectors = job.result()
            except ModelUnavailableError as error:  # its server went away: store the chunks, vectors later
                self._lazy.stop(error)
            else:
                if not self._lazy.stopped:
                    for chunk, vector in zip(chunks, vectors, strict=True):
                        chunk.embedding = vector
                    report.vectors_written += len(chunks)
        if pending:
            report.chunks_written += self._ingestor.app.store.replace_documents([item.record for item in pending])
        for item in pending:
            self._ingestor._note(report, item.result, self._on_result)
        self._release(done + [item.result.path for item in pending])


class _LazyEmbedder:
    """The embedding model for one run, loaded on first need: an unchanged re-ingest never loads it."""

    def __init__(self, ingestor: Ingestor, report: IngestReport):
        self._ingestor, self._report = ingestor, report
        self._loaded = False
        self._model: Any | None = None
        self.stopped = False

    @functools.cached_property
    def on_disk(self) -> bool:
        """Whether vectors will be written, judged without loading: switched on and on disk."""
        settings = self._ingestor.settings
        if not settings.embedding_enabled:
            return False
        if settings.embedding_backend != "local":
            return True  # a server's model: whether it answers is found out when a chunk needs it
        from askany.models.registry import resolve_model

        try:
            resolve_model(settings, "embedding", allow_download=False)
        except AskAnyError:
            return False
        return True

    def expected(self) -> bool:
        return self._model is not None if self._loaded else self.on_disk

    def get(self) -> Any | None:
        if not self._loaded:
            self._model = self._ingestor._embedder(self._report)
            self._loaded = True
        return self._model

    def stop(self, error: ModelUnavailableError) -> None:
        """The model failed mid-run (its server went away): the rest of the run stores no vectors."""
        self._model, self._loaded, self.stopped = None, True, True
        report = self._report
        report.embedding_note = Notice("vectors_stopped", written=report.vectors_written, reason=error)
        log.warning("%s", report.embedding_note)


def _printable(path: Path) -> str:
    """A path as text even when its name is not valid UTF-8 (shown with replacement characters)."""
    return os.fsencode(path).decode("utf-8", "replace")
