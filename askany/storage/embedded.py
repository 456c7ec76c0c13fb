"""The embedded PostgreSQL (pgserver) in DATA_DIR/pgdata: created, started, shared and stopped safely.

pgserver runs one server per data folder, keeps the PIDs of the processes using it in
`pgdata/.handle_pids.json` and stops it when the last of them exits. What a killed process
leaves behind is dealt with here, under pgserver's own inter-process lock:

- A first start killed during initdb: initdb now runs in a sibling folder that is renamed to
  `pgdata` only when complete, so an interrupt leaves no half folder. A half folder made by the
  older in-place initdb is made again when it provably holds no data, and refused with the
  folder to move away when it might.
- A killed user of the server (`kill -9`, a SIGTERM'd page): dead PIDs are pruned from the handle
  list at every start and stop, so the last live user still stops the server.
- A killed server: its `postmaster.pid` is left to PostgreSQL, which replaces a stale one, once
  the old server's processes are gone; a lock file pgserver cannot read, or whose PID now names
  a zombie or another program, is removed (only when no process of the old server is left).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

import psutil

from askany.core.errors import DatabaseError

log = logging.getLogger(__name__)

PGDATA = "pgdata"
HANDLES = ".handle_pids.json"
# What a finished initdb has made: the version file, the control file, and the databases
# template1, template0 and postgres (fixed OIDs since PostgreSQL 15).
COMPLETE = ("PG_VERSION", "global/pg_control", "base/1", "base/4", "base/5")
# Top-level names initdb, PostgreSQL and pgserver create (with everything named pg_*).
MADE_BY_SERVER = {"PG_VERSION", "base", "global", "postgresql.conf", "postgresql.auto.conf", "pg_hba.conf",
                  "pg_ident.conf", "postmaster.pid", "postmaster.opts", "current_logfiles", "log", HANDLES,
                  ".s.PGSQL.5432", ".s.PGSQL.5432.lock"}
FIRST_USER_OID = 16384  # every database, table or index created after initdb has an OID from here on
INITDB_ARGS = ["--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres"]  # pgserver's own
SERVER_PROGRAMS = {"postgres", "initdb"}
SYSTEM_USER = "pgserver"  # pgserver runs the server as this user when started by root
OLD_SERVER_WAIT = 10.0


def start(data_dir: Path) -> str:
    """Start (or join, or restart) the embedded PostgreSQL in DATA_DIR/pgdata; return its URL."""
    import pgserver
    from pgserver.postgres_server import PostgresServer

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / PGDATA).resolve()
    logged = _log_size(pgdata)
    try:
        with PostgresServer._lock:
            _prepare(pgdata)
            known = PostgresServer._instances.get(pgdata)
            if known is not None and not server_running(pgdata):  # it died under this process: start it again
                known.ensure_postgres_running()
                known.global_process_id_list.get_and_add(os.getpid())
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    except DatabaseError:
        raise
    except Exception as error:  # pgserver raises CalledProcessError/TimeoutExpired/AssertionError
        raise DatabaseError(_start_failure(pgdata, error, logged)) from None
    atexit.unregister(server._cleanup)  # replaced by _release, which survives a dead server
    if not getattr(server, "_askany_release", False):
        server._askany_release = True
        atexit.register(_release, server)
    return server.get_uri()


def server_running(pgdata: Path) -> bool:
    """True when the postmaster named in pgdata/postmaster.pid is alive and serves pgdata."""
    pid = _lock_file(pgdata)[0]
    return pid is not None and pid > 0 and _serves(pid, pgdata)


def _prepare(pgdata: Path) -> None:
    """Make pgdata a complete data folder with no stale state pgserver would trip over (under the lock)."""
    _discard_staging(pgdata)
    if not pgdata.exists() or not any(pgdata.iterdir()):
        _initdb(pgdata)
        return
    missing = next((part for part in COMPLETE if not (pgdata / part).exists()), None)
    pid = _lock_file(pgdata)[0]
    if missing is not None or (pid is not None and pid <= 0):
        reason = f"{missing} is missing" if missing else "initdb's single-user server did not finish"
        if _holds_no_data(pgdata):
            _stop_processes_of(pgdata)
            log.warning("%s was left half made by an interrupted first start (%s); it held no data and is "
                        "made again", pgdata, reason)
            shutil.rmtree(pgdata)
            _initdb(pgdata)
            return
        if missing is not None:
            raise DatabaseError(f"{pgdata} is not a complete PostgreSQL data folder ({reason}) and may hold "
                                "data, so AskAny leaves it alone: move it away (or delete it if nothing in it "
                                "is needed) and run the command again to make a new one")
    _clear_stale_lock(pgdata)
    _prune_handles(pgdata)


def _initdb(pgdata: Path) -> None:
    """initdb into a sibling folder, renamed to pgdata when complete: never a half-made pgdata."""
    from pgserver._commands import initdb

    _stop_processes_of(pgdata)  # a server left running on a deleted folder of this name (pgserver does this too)
    staging = pgdata.with_name(f".{pgdata.name}.initdb-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    user = _give_to_system_user(staging)
    log.info("Creating the embedded PostgreSQL data folder %s", pgdata)
    initdb(INITDB_ARGS, pgdata=staging, user=user)
    if pgdata.exists():
        pgdata.rmdir()  # empty (checked by the caller): the rename needs the name free
    staging.rename(pgdata)


def _discard_staging(pgdata: Path) -> None:
    """Remove initdb folders of starts that were killed (all of them: this process holds the lock)."""
    for staging in pgdata.parent.glob(f".{pgdata.name}.initdb-*"):
        _stop_processes_of(staging)  # an initdb whose parent was killed goes on alone
        shutil.rmtree(staging, ignore_errors=True)


def _give_to_system_user(folder: Path) -> str | None:
    """As root, pgserver runs initdb and the server as SYSTEM_USER: let it use the folder and binaries."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    import pwd
    import stat

    from pgserver._commands import POSTGRES_BIN_PATH
    from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(folder)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    read = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, read | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
    entry = pwd.getpwnam(SYSTEM_USER)
    os.chown(folder, entry.pw_uid, entry.pw_gid)
    return SYSTEM_USER


def _holds_no_data(pgdata: Path) -> bool:
    """True when pgdata provably holds nothing anyone stored: only names the server makes, no
    tablespace, and no database or relation file with an OID from after initdb."""
    if any(entry.name not in MADE_BY_SERVER and not entry.name.startswith("pg_") for entry in pgdata.iterdir()):
        return False
    tablespaces = pgdata / "pg_tblspc"
    if tablespaces.is_dir() and any(tablespaces.iterdir()):
        return False
    base = pgdata / "base"
    for database in base.iterdir() if base.is_dir() else ():
        if database.name == "pgsql_tmp":
            continue
        if not database.name.isdigit() or int(database.name) >= FIRST_USER_OID:
            return False
        for file in database.iterdir():
            oid = re.match(r"\d+", file.name)
            if oid and int(oid.group()) >= FIRST_USER_OID:
                return False
    return True


def _lock_file(pgdata: Path) -> tuple[int | None, bool]:
    """The PID on the first line of postmaster.pid (negative for a single-user server) and whether
    pgserver can read the file (it wants all 8 lines a started postmaster writes)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        return int(lines[0]), len(lines) == 8
    except (OSError, ValueError, IndexError):
        return None, False


def _clear_stale_lock(pgdata: Path) -> None:
    lock = pgdata / "postmaster.pid"
    if not lock.exists():
        return
    pid, readable = _lock_file(pgdata)
    if pid is not None and pid > 0 and _serves(pid, pgdata):
        return  # the server is running: join it
    if pid is not None:
        _wait_reaped(abs(pid))
    # The server that wrote the lock file is gone. PostgreSQL refuses to start while processes of
    # the old server still use the folder, so let them finish (they exit once their postmaster died).
    deadline = time.monotonic() + OLD_SERVER_WAIT
    while (left := _processes_of(pgdata)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if left:
        raise DatabaseError(f"Processes of a stopped embedded PostgreSQL still use {pgdata} (PIDs "
                            f"{', '.join(str(p.pid) for p in left)}); stop them (kill PID) and run the command again")
    # PostgreSQL itself replaces lock files whose PID is dead (and frees the old shared memory), but
    # takes a zombie's or a reused PID for a running server, and pgserver cannot read a short file.
    if pid is None or not readable or pid <= 0 or psutil.pid_exists(pid):
        lines = lock.read_text().splitlines()
        socket_dirs = {pgdata, Path(lines[4])} if readable and lines[4] else {pgdata}
        for socket_lock in (path for folder in socket_dirs for path in folder.glob(".s.PGSQL.*.lock")):
            if socket_lock.read_text().split("\n", 1)[0].strip() == str(pid):
                socket_lock.unlink(missing_ok=True)
        log.info("Removing the stale %s", lock)
        lock.unlink(missing_ok=True)


def _wait_reaped(pid: int, timeout: float = 3.0) -> None:
    """A killed postmaster stays a zombie until its parent (init, or this process) reaps it."""
    deadline = time.monotonic() + timeout
    while psutil.pid_exists(pid) and not _alive(pid) and time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _serves(pid: int, pgdata: Path) -> bool:
    """The process is alive and works in pgdata (every PostgreSQL process runs there)."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and Path(process.cwd()) == pgdata
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process: assume it is the server rather than start a second
        return True


def _processes_of(folder: Path) -> list[psutil.Process]:
    """Live PostgreSQL processes working in the folder or started with it as an argument (initdb)."""
    found = []
    for process in psutil.process_iter(["name", "cwd", "cmdline", "status"]):
        info = process.info
        if info["name"] not in SERVER_PROGRAMS or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if (info["cwd"] and Path(info["cwd"]) == folder) or str(folder) in (info["cmdline"] or ()):
            found.append(process)
    return found


def _stop_processes_of(folder: Path) -> None:
    """Kill what still works on a folder that is thrown away (an orphaned initdb and its backend)."""
    processes = _processes_of(folder)
    for process in processes:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(processes, timeout=5)


def _prune_handles(pgdata: Path) -> list[int]:
    """Drop the PIDs of dead processes from pgserver's handle list (under the lock); the live ones."""
    path = pgdata / HANDLES
    try:
        pids = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError):  # a process killed while writing it
        pids = None
    live = [pid for pid in pids if isinstance(pid, int) and _alive(pid)] if isinstance(pids, list) else []
    if live != pids:
        log.info("Dropping PIDs of processes that are gone from %s: %s", path, pids)
        temporary = path.with_name(f"{path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(live))
        temporary.replace(path)
    return live


def _release(server: object) -> None:
    """At exit: leave the handle list and stop the server if this was its last live user."""
    from pgserver.postgres_server import PostgresServer

    pgdata: Path = server.pgdata  # type: ignore[attr-defined]
    try:
        with PostgresServer._lock:
            _prune_handles(pgdata)
            if PostgresServer._instances.get(pgdata) is not server:
                return  # already stopped through cleanup()
            if not server_running(pgdata):  # it died: nothing to stop, and pg_ctl would only fail
                server.global_process_id_list.get_and_remove(os.getpid())  # type: ignore[attr-defined]
                del PostgresServer._instances[pgdata]
                return
        server._cleanup()  # type: ignore[attr-defined]
    except Exception as error:  # exiting: a failed stop must not end the command with a traceback
        log.warning("Could not stop the embedded PostgreSQL in %s (%s); stop it by the PID on the first line "
                    "of %s", pgdata, error, pgdata / "postmaster.pid")


def _log_size(pgdata: Path) -> int:
    try:
        return (pgdata / "log").stat().st_size
    except OSError:
        return 0


def _start_failure(pgdata: Path, error: Exception, logged: int) -> str:
    """One sentence on why the server did not start, with the server's own reason if it logged one
    during this start (the log's older lines are about earlier runs)."""
    text = str(error).strip()
    reason = f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
    logfile = pgdata / "log"
    try:
        with logfile.open("rb") as handle:
            handle.seek(logged)
            lines = handle.read(1 << 20).decode("utf-8", "replace").splitlines()
        reason = next(line.split("] ", 1)[-1] for line in reversed(lines) if re.search(r"\b(FATAL|PANIC):", line))
    except (OSError, StopIteration):
        pass
    where = f"see {logfile}, or" if logfile.exists() else "or"
    return (f"The embedded PostgreSQL in {pgdata} did not start ({reason}); {where} set DATABASE_URL "
            "to an external server")
