"""Fixtures for tests that start, kill and restart an embedded PostgreSQL of their own."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest


def processes_in(pgdata: Path) -> list[psutil.Process]:
    """Every live process of a server on pgdata (PostgreSQL's processes all work in their data folder)."""
    found = []
    for process in psutil.process_iter(["cwd", "status"]):
        if process.info["status"] != psutil.STATUS_ZOMBIE and process.info["cwd"] == str(pgdata):
            found.append(process)
    return found


def stop_servers_in(pgdata: Path) -> None:
    """Kill whatever server a test left on its own data folder (the data is thrown away)."""
    processes = processes_in(pgdata)
    for process in processes:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(processes, timeout=10)


def copy_owned(source: Path, target: Path) -> None:
    """Copy a data folder keeping its owner (as root the server runs as the pgserver user)."""
    shutil.copytree(source, target, symlinks=True)
    owner = source.stat()
    for path in [target, *target.rglob("*")]:
        os.lchown(path, owner.st_uid, owner.st_gid)


@pytest.fixture(scope="session")
def pgdata_template() -> Iterator[Path]:
    """A data folder made by initdb and cleanly stopped once, copied by each test (initdb costs seconds)."""
    import pgserver

    folder = Path(tempfile.mkdtemp(prefix="askany-pgdata-template-"))
    pgdata = folder / "pgdata"
    pgserver.get_server(pgdata, cleanup_mode="stop").cleanup()
    yield pgdata
    stop_servers_in(pgdata)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def fresh_data_dir() -> Iterator[Path]:
    """An empty DATA_DIR of this test's own, its server stopped at the end whatever happened.

    Outside pytest's numbered temp folders, which a concurrent pytest run may prune."""
    folder = Path(tempfile.mkdtemp(prefix="askany-test-own-"))
    yield folder
    for pgdata in [folder / "pgdata", *folder.glob(".pgdata.initdb-*")]:
        stop_servers_in(pgdata)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def own_data_dir(fresh_data_dir: Path, pgdata_template: Path) -> Path:
    """A DATA_DIR with an initialised, stopped data folder of this test's own."""
    copy_owned(pgdata_template, fresh_data_dir / "pgdata")
    return fresh_data_dir
