"""Embedded PostgreSQL: start, reuse, restart with data kept; schema migration is idempotent."""

from __future__ import annotations

import os
import signal

import pgserver
import psycopg
import pytest

from askany.core.config import load_settings
from askany.core.errors import DatabaseError
from askany.storage.database import SCHEMA_VERSION, Database, embedded_url, migrate, open_database


def test_embedded_start_reuse_and_restart_keeps_data(tmp_path) -> None:
    data_dir = tmp_path / "data"
    url = embedded_url(data_dir)
    db = Database(url, embedded=True).open()
    assert db.pgvector_version() == "0.8.2"
    with db.connection() as conn:
        conn.execute("CREATE TABLE kept (value text)")
        conn.execute("INSERT INTO kept VALUES ('数据保留')")
    assert embedded_url(data_dir) == url  # the running server is reused
    db.close()

    server = pgserver.get_server(data_dir / "pgdata")
    server.cleanup()  # stop it, as at the end of a process
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)

    restarted = Database(embedded_url(data_dir), embedded=True).open()
    with restarted.connection() as conn:
        assert conn.execute("SELECT value FROM kept").fetchone()[0] == "数据保留"
    restarted.close()
    pgserver.get_server(data_dir / "pgdata").cleanup()


def test_schema_is_versioned_and_migration_idempotent(make_settings) -> None:
    db = open_database(make_settings())
    migrate(db)
    migrate(db)
    with db.connection() as conn:
        version = conn.execute("SELECT value FROM askany_meta WHERE key = 'schema_version'").fetchone()[0]
        tables = {row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()}
    assert int(version) == SCHEMA_VERSION
    assert {"documents", "chunks", "keyword_postings", "keyword_segments", "askany_meta"} <= tables


def test_newer_schema_is_refused(make_settings) -> None:
    db = open_database(make_settings())
    with db.connection() as conn:
        conn.execute("UPDATE askany_meta SET value = '999' WHERE key = 'schema_version'")
    try:
        with pytest.raises(DatabaseError, match="newer than this AskAny"):
            migrate(db)
    finally:
        with db.connection() as conn:
            conn.execute("UPDATE askany_meta SET value = %s WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def test_external_server_unreachable_is_one_sentence(tmp_path) -> None:
    settings = load_settings(postgres_host="127.0.0.1", postgres_port=1, data_dir=tmp_path)
    assert not settings.uses_embedded_database
    with pytest.raises(DatabaseError, match="Cannot connect to the PostgreSQL at DATABASE_URL/POSTGRES_HOST"):
        open_database(settings)


def test_external_url_is_used_through_the_same_code(make_settings) -> None:
    """DATABASE_URL pointing at a running server goes through the same connection and schema code."""
    embedded = open_database(make_settings())
    settings = load_settings(database_url=embedded.url)
    assert not settings.uses_embedded_database
    db = open_database(settings)
    assert db.url == embedded.url and db.pgvector_version() == "0.8.2"


def test_a_server_killed_under_a_connection_is_one_error_and_the_next_use_restarts_it(make_settings,
                                                                                      own_data_dir) -> None:
    """The page and the HTTP server live on after the embedded server dies: the next request restarts it."""
    pgdata = own_data_dir / "pgdata"
    db = open_database(make_settings(data_dir=own_data_dir))
    try:
        with db.connection() as conn:
            conn.execute("CREATE TABLE kept (value text)")
            conn.execute("INSERT INTO kept VALUES ('保留')")
        postmaster = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        with pytest.raises(DatabaseError, match="stopped while this command was using it") as caught:
            with db.connection() as conn:
                conn.execute("INSERT INTO kept VALUES ('丢失')")
                os.kill(postmaster, signal.SIGKILL)
                conn.execute("SELECT pg_sleep(5)")
        assert "run the same command again" in str(caught.value)
        with db.connection() as conn:
            assert conn.execute("SELECT value FROM kept").fetchall() == [("保留",)]
    finally:
        db.close()
        pgserver.get_server(pgdata).cleanup()
