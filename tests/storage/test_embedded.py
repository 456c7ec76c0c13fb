"""The embedded PostgreSQL's life across killed processes, driven through `python -m askany.main`.

Each test has its own DATA_DIR (not the session database): it kills servers, interrupts initdb
and leaves stale PIDs on purpose.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import psycopg
import pytest

from askany.core.errors import DatabaseError
from askany.storage.database import embedded_url
from tests.storage.conftest import copy_owned, processes_in

CMRC_DOCS = Path(__file__).resolve().parents[3] / "shared" / "eval" / "cmrc2018-trial" / "docs"


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "DATA_DIR": str(data_dir), "MODELS_DIR": str(data_dir / "models"),
            "EMBEDDING_MODEL": str(data_dir / "no-embedding-model"),
            "RERANKER_MODEL": str(data_dir / "no-reranker-model"), "LLM_BACKEND": "none", **extra}


_started: list[subprocess.Popen[str]] = []


def askany(data_dir: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-m", "askany.main", *args], env=cli_env(data_dir, **extra),
                               cwd=data_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    _started.append(process)
    return process


@pytest.fixture(autouse=True)
def _no_command_outlives_its_test() -> object:
    """A test that fails half-way must not leave its command (a page server, say) running."""
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


def finish(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def postmaster(pgdata: Path) -> int | None:
    """The PID of the server running on pgdata, or None."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        process = psutil.Process(pid)
        running = process.status() != psutil.STATUS_ZOMBIE and process.cwd() == str(pgdata)
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
    return pid if running else None


def handles(pgdata: Path) -> list[int]:
    """pgserver's list of the processes using the server (empty while pgserver rewrites it in place)."""
    path = pgdata / ".handle_pids.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def wait_for(condition: Callable[[], object], process: subprocess.Popen[str] | None = None,
             timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the command ended first: {process.communicate()}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def gone_soon(pgdata: Path, timeout: float = 15) -> bool:
    """True once no server runs on pgdata (a server stopped at a command's exit)."""
    deadline = time.monotonic() + timeout
    while postmaster(pgdata) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return postmaster(pgdata) is None


def some_docs(tmp_path: Path, count: int) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for path in sorted(CMRC_DOCS.glob("*.md"))[:count]:
        shutil.copy(path, docs / path.name)
    return docs


def migrated(pgdata: Path) -> bool:
    """The running command has opened the database (its schema is committed)."""
    try:
        with psycopg.connect(f"postgresql://postgres:@/postgres?host={pgdata}", connect_timeout=2) as conn:
            return conn.execute("SELECT to_regclass('documents') IS NOT NULL").fetchone()[0]
    except psycopg.OperationalError:
        return False


def test_server_killed_under_an_ingestion_is_one_sentence_and_the_next_run_finishes(own_data_dir,
                                                                                     tmp_path) -> None:
    pgdata = own_data_dir / "pgdata"
    docs = some_docs(tmp_path, 40)  # under the worker-pool threshold: one process, keyword only
    command = ("--ingest", str(docs), "--kb", "killed", "--no-progress", "--json")
    run = askany(own_data_dir, *command)
    wait_for(lambda: migrated(pgdata), run)
    os.kill(postmaster(pgdata), signal.SIGKILL)  # the postmaster itself, mid-run
    status, out, err = finish(run)
    assert status == 2, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: The embedded PostgreSQL stopped while this command was using it"), err
    assert "run the same command again" in err

    again = askany(own_data_dir, *command)  # a stale postmaster.pid is left: the server starts again
    status, out, err = finish(again)
    assert status == 0, err
    assert json.loads(out)["files"]["new"] == 40
    assert gone_soon(pgdata) and handles(pgdata) == []


def kill_during_initdb(process: subprocess.Popen[str] | psutil.Popen, parent: Path) -> None:
    """SIGKILL a process group while initdb's single-user server is building a data folder in parent
    (an interrupt a user's Ctrl-C or a killed container delivers to the whole group)."""
    wait_for(lambda: any(parent.glob("*pgdata*/postmaster.pid")), process)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for folder in parent.glob("*pgdata*"):
        psutil.wait_procs(processes_in(folder), timeout=5)


def test_first_start_killed_during_initdb_is_made_again(fresh_data_dir) -> None:
    first = askany(fresh_data_dir, "--check-db", "--json")
    kill_during_initdb(first, fresh_data_dir)
    assert not (fresh_data_dir / "pgdata" / "PG_VERSION").exists(), "initdb must not leave a half pgdata"

    status, out, err = finish(askany(fresh_data_dir, "--check-db", "--json"))
    assert status == 0, err
    assert json.loads(out)["knowledge_bases"] == []
    assert list(fresh_data_dir.glob(".pgdata.initdb-*")) == []  # the killed start's folder is gone
    assert gone_soon(fresh_data_dir / "pgdata")


@pytest.fixture
def half_made_pgdata(tmp_path) -> Path:
    """The folder pgserver's own in-place initdb leaves when its process group is killed."""
    pgdata = tmp_path / "interrupted" / "pgdata"
    pgdata.parent.mkdir()
    starting = psutil.Popen([sys.executable, "-c", f"import pgserver; pgserver.get_server({str(pgdata)!r})"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    kill_during_initdb(starting, pgdata.parent)
    assert (pgdata / "PG_VERSION").exists() and not (pgdata / "base" / "5").exists()
    return pgdata


def test_half_made_data_folder_without_data_is_made_again(half_made_pgdata, fresh_data_dir) -> None:
    import pgserver

    copy_owned(half_made_pgdata, fresh_data_dir / "pgdata")
    url = embedded_url(fresh_data_dir)
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'postgres'").fetchone()[0] == 1
    finally:
        pgserver.get_server(fresh_data_dir / "pgdata").cleanup()


def test_half_made_data_folder_that_may_hold_data_is_left_alone(half_made_pgdata, fresh_data_dir) -> None:
    pgdata = fresh_data_dir / "pgdata"
    copy_owned(half_made_pgdata, pgdata)
    (pgdata / "base" / "5").mkdir()
    (pgdata / "base" / "5" / "16390").write_bytes(b"\0" * 8192)  # a relation made after initdb
    with pytest.raises(DatabaseError, match="not a complete PostgreSQL data folder .* may hold data") as caught:
        embedded_url(fresh_data_dir)
    assert str(pgdata) in str(caught.value) and "move it away" in str(caught.value)
    assert (pgdata / "base" / "5" / "16390").exists()


def test_a_killed_user_does_not_keep_the_server_running(own_data_dir, tmp_path) -> None:
    pgdata = own_data_dir / "pgdata"
    docs = some_docs(tmp_path, 40)
    killed = askany(own_data_dir, "--ingest", str(docs), "--no-progress")
    wait_for(lambda: killed.pid in handles(pgdata), killed)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert postmaster(pgdata) is not None and killed.pid in handles(pgdata)  # what kill -9 leaves

    status, _, err = finish(askany(own_data_dir, "--check-db", "--json"))
    assert status == 0, err
    assert gone_soon(pgdata), "the last live user stops the server"
    assert handles(pgdata) == []


def test_sigterm_ends_a_command_like_ctrl_c_and_stops_the_server(own_data_dir, tmp_path) -> None:
    pgdata = own_data_dir / "pgdata"
    docs = some_docs(tmp_path, 40)
    run = askany(own_data_dir, "--ingest", str(docs), "--no-progress")
    wait_for(lambda: run.pid in handles(pgdata), run)
    run.send_signal(signal.SIGTERM)
    status, _, err = finish(run)
    assert status == 130, err
    assert "Traceback" not in err and "Interrupted" in err
    assert gone_soon(pgdata) and handles(pgdata) == []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_sigterm_of_the_page_stops_the_server(own_data_dir) -> None:
    """uvicorn re-raises SIGTERM after its graceful shutdown; it must end in AskAny's cleanup, not death."""
    pgdata = own_data_dir / "pgdata"
    page = askany(own_data_dir, "--ui", "--port", str(free_port()), GRADIO_ANALYTICS_ENABLED="False")
    wait_for(lambda: page.pid in handles(pgdata), page, timeout=120)  # the warm-up opened the database
    time.sleep(1)  # let the server start listening
    page.send_signal(signal.SIGTERM)
    status, _, err = finish(page)
    assert status == 130, err
    assert "Traceback" not in err
    assert gone_soon(pgdata) and handles(pgdata) == []
