"""Parsing, chunking and analyzing files in worker processes, so ingestion uses every core.

The ingesting process reads each file and compares it with what is stored; the files that
need work go, in batches, to `INGEST_WORKERS` processes that parse, chunk and analyze them
(the CPU-heavy part) and send back document records. The ingesting process keeps writing to
the database, building keyword segments and computing vectors meanwhile, so everything that
reaches the database is decided in one place, and a crash anywhere loses no stored state.

Small runs, and runs with the HanLP tokenizer (a model each worker would have to load), stay
in one process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from itertools import chain
from typing import TYPE_CHECKING, Any

from askany.core.errors import AskAnyError

if TYPE_CHECKING:
    from askany.core.config import Settings
    from askany.ingestion.pipeline import FileResult, Ingestor, ParseTask

log = logging.getLogger(__name__)

POOL_MIN_TASKS = 64  # below this many files to parse, starting processes costs more than it saves
BATCH_FILES = 32
BATCH_BYTES = 4 * 1024 * 1024
IN_FLIGHT_PER_WORKER = 12


def worker_count(settings: Settings) -> int:
    """INGEST_WORKERS, with -1 meaning one a CPU core (up to 8): measured on 2 cores, 10k chunks,
    keyword only, 580 chunks/s in one process, 656 with one worker, 791 with two."""
    if settings.ingest_workers >= 0:
        return settings.ingest_workers
    cores = os.cpu_count() or 1
    return min(8, cores) if cores > 1 else 0


def parse_all(ingestor: Ingestor, examined: Iterable[FileResult | ParseTask], kb: str, tags: list[str],
              fingerprint: str) -> Iterator[Any]:
    """Each examined file's outcome: results pass through, tasks come back parsed (in order of tasks)."""
    from askany.ingestion.pipeline import ParseTask

    workers = worker_count(ingestor.settings)
    if workers and ingestor.app.analyzer.segmenter.name != "jieba":
        workers = 0  # each worker would load its own HanLP model
    examined = iter(examined)
    ahead: list[FileResult | ParseTask] = []
    if workers:
        tasks = 0
        for item in examined:
            ahead.append(item)
            tasks += isinstance(item, ParseTask)
            if tasks >= POOL_MIN_TASKS:
                yield from _in_pool(ingestor, workers, chain(ahead, examined), kb, tags, fingerprint)
                return
    yield from _here(ingestor, chain(ahead, examined), kb, tags, fingerprint)


def _here(ingestor: Ingestor, items: Iterable[Any], kb: str, tags: list[str], fingerprint: str) -> Iterator[Any]:
    from askany.ingestion.pipeline import ParseTask

    for item in items:
        yield ingestor.parse(item, kb, tags, fingerprint) if isinstance(item, ParseTask) else item


def _in_pool(ingestor: Ingestor, workers: int, items: Iterator[FileResult | ParseTask], kb: str, tags: list[str],
             fingerprint: str) -> Iterator[Any]:
    from askany.ingestion.pipeline import ParseTask

    context = multiprocessing.get_context("spawn")
    stop = context.Event()  # set when the run ends early: a worker stops a long OCR file at its next page
    try:
        with _main_hidden():
            pool = ProcessPoolExecutor(workers, context, _start_worker,
                                       (ingestor.settings, kb, tags, fingerprint, ingestor.show_progress, stop))
    except OSError as error:  # no processes to be had: parse here
        log.warning("Could not start %d ingestion workers (%s): parsing in this process", workers, error)
        yield from _here(ingestor, items, kb, tags, fingerprint)
        return
    # Enough batches in flight to keep the workers busy while this process writes a whole group of
    # chunks (seconds), few enough to bound memory (each batch is at most BATCH_BYTES of files).
    window: deque[Future] = deque()
    batch: list[ParseTask] = []
    size = 0
    try:
        for item in items:
            if not isinstance(item, ParseTask):
                yield item
                continue
            batch.append(item)
            size += len(item.data) if item.data is not None else 16 * 1024
            if len(batch) >= BATCH_FILES or size >= BATCH_BYTES:
                window.append(pool.submit(_parse_batch, batch))
                batch, size = [], 0
                while len(window) > IN_FLIGHT_PER_WORKER * workers:
                    yield from _result(window.popleft())
        if batch:
            window.append(pool.submit(_parse_batch, batch))
        while window:
            yield from _result(window.popleft())
    finally:
        # Interrupted or failed: the unfinished batches are not wanted. (A worker that died makes
        # every pending batch fail at once, with BrokenProcessPool, instead of waiting forever.)
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


def _result(future: Future) -> list[Any]:
    try:
        return future.result()
    except BrokenProcessPool:
        raise AskAnyError("An ingestion worker process died (out of memory, or killed); the files stored so "
                          "far are kept: run the same command again, or set INGEST_WORKERS=0 to parse in "
                          "one process") from None


@contextmanager
def _main_hidden() -> Iterator[None]:
    """Start workers without the caller's __main__: spawn would import it in every worker, running
    a script that lacks an `if __name__ == "__main__"` guard once more, and they need only askany."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {key: main.__dict__[key] for key in ("__file__", "__spec__") if key in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)
        if "__spec__" not in saved:
            del main.__spec__


_worker: tuple[Ingestor, str, list[str], str] | None = None
_start_error: BaseException | None = None


def _start_worker(settings: Settings, kb: str, tags: list[str], fingerprint: str, progress: bool,
                  stop: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the ingesting process's to handle
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="askany-parent-watch",
                     daemon=True).start()
    global _worker, _start_error
    try:
        from askany.context import AskAny
        from askany.ingestion.loaders import ocr
        from askany.ingestion.pipeline import Ingestor
        from askany.models.registry import ModelRegistry

        ocr.set_cancel_check(stop.is_set)  # OCR reads page by page: an interrupted run waits a page
        ingestor = Ingestor(AskAny(settings, ModelRegistry(settings)))
        ingestor.show_progress = progress
        _worker = (ingestor, kb, tags, fingerprint)
    except BaseException as error:  # noqa: BLE001 - raising here would make the pool respawn workers forever
        _start_error = error


def _exit_with_parent(parent: int) -> None:
    """A worker whose ingesting process died (kill -9) exits too: nothing else would tell it, since
    it holds both ends of its task queue, and it would keep the dead process's output pipes open."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _parse_batch(tasks: list[ParseTask]) -> list[Any]:
    if _start_error is not None:
        raise RuntimeError(f"ingestion worker could not start: {_start_error!r}") from _start_error
    assert _worker is not None, "worker not started"
    ingestor, kb, tags, fingerprint = _worker
    return [ingestor.parse(task, kb, tags, fingerprint) for task in tasks]
