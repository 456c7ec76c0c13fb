"""Ingestion in the background: uploads copied, then ingested in a thread, with their progress
(files done of total, the file being worked on, each file's result) readable at any moment, so a
front door stays usable while a large upload runs and can show where it is."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from askany.ingestion.pipeline import FileResult, IngestReport

log = logging.getLogger(__name__)
KEPT_JOBS = 20  # finished jobs remembered (a page reloaded after its upload still finds the table)


@dataclass
class IngestJob:
    id: str
    kb: str
    names: dict[str, str]  # stored path -> the name as uploaded, in upload order
    results: list[tuple[str, FileResult]] = field(default_factory=list)  # (name as uploaded, result)
    finished: bool = False
    error: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def total(self) -> int:
        return len(self.names) + sum(1 for _, r in self.results if r.path not in self.names)

    @property
    def done(self) -> int:
        return len(self.results)

    def current(self) -> str:
        """The first uploaded file without a result yet: the one being ingested (files go in order)."""
        with self._lock:
            seen = {result.path for _, result in self.results}
        return next((name for path, name in self.names.items() if path not in seen), "")

    def snapshot(self) -> list[tuple[str, FileResult]]:
        with self._lock:
            return list(self.results)

    def add(self, result: FileResult) -> None:
        with self._lock:
            self.results.append((self.names.get(result.path, Path(result.path).name), result))


class IngestJobs:
    """The background ingestion jobs of one process; `start` returns at once."""

    def __init__(self, ingest: Callable[..., IngestReport]):
        self._ingest = ingest
        self._jobs: dict[str, IngestJob] = {}
        self._lock = threading.Lock()

    def start(self, stored: dict[str, str], refused: list[FileResult], kb: str, tags: list[str]) -> IngestJob:
        job = IngestJob(uuid.uuid4().hex, kb, dict(stored))
        for result in refused:
            job.results.append((result.path, result))
        with self._lock:
            self._jobs[job.id] = job
            finished = [key for key, old in self._jobs.items() if old.finished]
            for key in finished[:-KEPT_JOBS]:
                del self._jobs[key]

        def work() -> None:
            try:
                if stored:
                    self._ingest([Path(p) for p in stored], kb=kb, tags=tags, on_result=job.add)
            except Exception as error:  # noqa: BLE001 - the job reports it; the page shows it
                log.exception("Background ingestion into %s failed", kb)
                job.error = str(error) or type(error).__name__
            finally:
                job.finished = True

        threading.Thread(target=work, name=f"askany-ingest-{job.id[:8]}", daemon=True).start()
        return job

    def running(self, kb: str) -> bool:
        """Whether a job of this process is still ingesting into knowledge base `kb`."""
        with self._lock:
            return any(job.kb == kb and not job.finished for job in self._jobs.values())

    def get(self, job_id: str | None) -> IngestJob | None:
        with self._lock:
            return self._jobs.get(job_id or "")
