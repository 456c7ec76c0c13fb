"""Fixtures shared by the tests: a loopback-only network guard, the embedded database, app factories."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn.config

os.environ["ASKANY_ENV_FILE"] = "/nonexistent/askany.env"  # never read a developer's .env in tests

from askany.context import AskAny  # noqa: E402
from askany.core.config import Settings, load_settings  # noqa: E402
from askany.models.registry import ModelRegistry  # noqa: E402

LOOPBACK_PREFIXES = ("127.", "::1", "localhost", "0:0:0:0:0:0:0:1")


def _is_loopback(address: object) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX socket path
        return True
    host = str(address[0]) if isinstance(address, tuple) and address else ""
    return host.startswith(LOOPBACK_PREFIXES)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Refuse, and fail the test on, any connection that would leave the machine."""
    attempts: list[object] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(real: Callable) -> Callable:
        def connect(self: socket.socket, address: object) -> object:
            if not _is_loopback(address):
                attempts.append(address)
                raise ConnectionRefusedError(f"test network guard: {address} is not loopback")
            return real(self, address)
        return connect

    monkeypatch.setattr(socket.socket, "connect", guarded(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(real_connect_ex))
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host is not None and not _is_loopback((host,)):
            attempts.append(host)
            raise socket.gaierror(f"test network guard: no lookups of {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    # uvloop, uvicorn's loop when installed, resolves and connects in C, past these patches: servers
    # started by a test run on asyncio's loop, so what they connect to is seen too.
    monkeypatch.setitem(uvicorn.config.LOOP_FACTORIES, "auto", uvicorn.config.LOOP_FACTORIES["asyncio"])
    yield attempts
    assert not attempts, f"the test tried to reach the network: {attempts}"


@pytest.fixture(scope="session")
def pg_data_dir() -> Iterator[Path]:
    """One embedded PostgreSQL data folder for the whole session (it starts in about a second).

    It lives outside pytest's numbered temp folders: a concurrent pytest run prunes old ones,
    which would pull the data folder from under the running server.
    """
    folder = Path(tempfile.mkdtemp(prefix="askany-test-data-"))
    yield folder
    pgdata = folder / "pgdata"
    if (pgdata / "PG_VERSION").exists():
        import pgserver

        pgserver.get_server(pgdata).cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def make_settings(pg_data_dir: Path, tmp_path: Path) -> Callable[..., Settings]:
    """Settings on the session database with no models unless given, and nothing from the hub."""
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "data_dir": pg_data_dir, "models_dir": tmp_path / "models",
            "embedding_model": str(tmp_path / "no-embedding-model"),
            "reranker_model": str(tmp_path / "no-reranker-model"),
            "llm_model": str(tmp_path / "no-llm"), "llm_backend": "none",
        }
        values.update(overrides)
        return load_settings(**values)
    return make


@pytest.fixture
def make_app(make_settings: Callable[..., Settings]) -> Callable[..., AskAny]:
    """An AskAny with its own model registry, on the session database emptied first."""
    def make(**overrides: object) -> AskAny:
        settings = make_settings(**overrides)
        return AskAny(settings, ModelRegistry(settings))
    return make


@pytest.fixture
def empty_db(make_app: Callable[..., AskAny]) -> None:
    """Start from an empty database: no documents, no vectors, no recorded embedding model."""
    empty_database(make_app())


def empty_database(app: AskAny) -> None:
    with app.db.connection() as conn:
        conn.execute("TRUNCATE documents, chunks, keyword_postings, keyword_segments, keyword_deleted, feedback, "
                     "knowledge_bases CASCADE")
    app.store.drop_vectors()


@pytest.fixture
def run_cli(pg_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run `python -m askany.main ARGS` in-process with settings from environment variables."""
    from askany.cli.main import main
    from askany.core.config import get_settings

    def run(*args: str, **env: str) -> tuple[int, str, str]:
        values = {"DATA_DIR": str(pg_data_dir), "MODELS_DIR": str(tmp_path / "models"),
                  "EMBEDDING_MODEL": str(tmp_path / "no-embedding-model"),
                  "RERANKER_MODEL": str(tmp_path / "no-reranker-model"), "LLM_BACKEND": "none"}
        values.update(env)
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        capsys.readouterr()
        try:
            status = main(list(args))
        finally:
            get_settings.cache_clear()
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run
