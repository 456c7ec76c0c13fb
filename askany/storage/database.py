"""Connecting to Postgres: the embedded pgserver in DATA_DIR, or an external server.

Both paths end in the same connection URL and the same SQL. The schema is
created and migrated here, idempotently, with its version recorded in
`askany_meta`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from askany.core.config import Settings
from askany.core.errors import DatabaseConnectionLost, DatabaseError
from askany.storage import embedded as embedded_server

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4

# Each entry migrates the schema from version (index) to version (index + 1).
MIGRATIONS: list[str] = [
    """
    CREATE TABLE IF NOT EXISTS documents (
        id            bigserial PRIMARY KEY,
        kb            text NOT NULL,
        source        text NOT NULL,
        title         text NOT NULL,
        kind          text NOT NULL CHECK (kind IN ('doc', 'faq')),
        content_hash  text NOT NULL,
        fingerprint   text NOT NULL,
        tags          text[] NOT NULL DEFAULT '{}',
        encoding      text,
        chunk_count   integer NOT NULL,
        ingested_at   timestamptz NOT NULL DEFAULT now(),
        UNIQUE (kb, source)
    );
    CREATE TABLE IF NOT EXISTS chunks (
        id            bigserial PRIMARY KEY,
        node_id       text NOT NULL UNIQUE,
        document_id   bigint NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        kb            text NOT NULL,
        position      integer NOT NULL,
        text          text NOT NULL,
        heading_path  text[] NOT NULL DEFAULT '{}',
        tags          text[] NOT NULL DEFAULT '{}',
        is_faq        boolean NOT NULL DEFAULT false,
        term_count    integer NOT NULL,
        metadata      jsonb NOT NULL DEFAULT '{}'
    );
    CREATE INDEX IF NOT EXISTS chunks_document ON chunks (document_id);
    CREATE INDEX IF NOT EXISTS chunks_kb ON chunks (kb);
    CREATE INDEX IF NOT EXISTS chunks_tags ON chunks USING gin (tags);
    CREATE TABLE IF NOT EXISTS chunk_terms (
        term      text NOT NULL,
        chunk_id  bigint NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
        tf        integer NOT NULL,
        PRIMARY KEY (term, chunk_id)
    );
    CREATE INDEX IF NOT EXISTS chunk_terms_chunk ON chunk_terms (chunk_id);
    """,
    # 2: the segmented keyword index (askany/keyword_index.py) replaces one row per (term, chunk).
    """
    DROP TABLE IF EXISTS chunk_terms;
    CREATE TABLE IF NOT EXISTS keyword_partitions (
        id      serial PRIMARY KEY,
        kb      text NOT NULL,
        is_faq  boolean NOT NULL,
        UNIQUE (kb, is_faq)
    );
    CREATE TABLE IF NOT EXISTS keyword_segments (
        id         bigserial PRIMARY KEY,
        part       integer NOT NULL REFERENCES keyword_partitions(id),
        docs       integer NOT NULL,
        chunk_ids  bytea NOT NULL,
        lengths    bytea NOT NULL,
        buckets    integer NOT NULL,
        frequent   bytea NOT NULL,
        postings   bigint NOT NULL
    );
    CREATE INDEX IF NOT EXISTS keyword_segments_part ON keyword_segments (part);
    CREATE TABLE IF NOT EXISTS keyword_postings (
        segment   bigint NOT NULL,
        bucket    integer NOT NULL,
        names     bytea NOT NULL,
        counts    bytea NOT NULL,
        postings  bytea NOT NULL,
        PRIMARY KEY (segment, bucket)
    );
    CREATE TABLE IF NOT EXISTS keyword_deleted (
        part      integer NOT NULL,
        chunk_id  bigint NOT NULL,
        PRIMARY KEY (part, chunk_id)
    );
    -- Every way a chunk disappears (replace, --sync, delete, cascades) leaves a tombstone, in the
    -- same transaction, so no query can return it again.
    CREATE OR REPLACE FUNCTION keyword_tombstones() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO keyword_deleted (part, chunk_id)
        SELECT p.id, gone.id FROM gone JOIN keyword_partitions p ON p.kb = gone.kb AND p.is_faq = gone.is_faq
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$;
    DROP TRIGGER IF EXISTS chunks_keyword_tombstones ON chunks;
    CREATE TRIGGER chunks_keyword_tombstones AFTER DELETE ON chunks REFERENCING OLD TABLE AS gone
        FOR EACH STATEMENT EXECUTE FUNCTION keyword_tombstones();
    INSERT INTO askany_meta SELECT 'keyword_index_rebuild', 'the database was upgraded to the segmented keyword index'
        WHERE EXISTS (SELECT 1 FROM chunks);
    """,
    # 3: 👍/👎 on answers (askany/storage/feedback.py), with what produced them.
    """
    CREATE TABLE IF NOT EXISTS feedback (
        id          bigserial PRIMARY KEY,
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now(),
        rating      smallint NOT NULL CHECK (rating IN (-1, 1)),
        comment     text NOT NULL DEFAULT '',
        question    text NOT NULL,
        answer      text NOT NULL,
        sources     jsonb NOT NULL DEFAULT '[]',
        settings    jsonb NOT NULL DEFAULT '{}'
    );
    CREATE INDEX IF NOT EXISTS feedback_rating ON feedback (rating, id);
    """,
    # 4: knowledge bases created before they hold a document (the page's "create"); one with
    # documents is listed whether or not it has a row here.
    """
    CREATE TABLE IF NOT EXISTS knowledge_bases (
        name        text PRIMARY KEY,
        created_at  timestamptz NOT NULL DEFAULT now()
    );
    """,
]


def embedded_url(data_dir: Path) -> str:
    """Start (or reuse, or restart) the embedded PostgreSQL in DATA_DIR/pgdata and return its URL."""
    return embedded_server.start(data_dir)


def external_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    password = f":{quote(settings.postgres_password)}" if settings.postgres_password else ""
    return (f"postgresql://{quote(settings.postgres_user)}{password}@{settings.postgres_host}:"
            f"{settings.postgres_port}/{quote(settings.postgres_db)}")


def _configure(connection: psycopg.Connection) -> None:
    register_vector(connection)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# Server-side ways of saying the server went away: shut down by an administrator or a signal,
# restarted after a crash, or not accepting connections while it starts or stops.
SERVER_GONE = (psycopg.errors.AdminShutdown, psycopg.errors.CrashShutdown, psycopg.errors.CannotConnectNow)


def connection_lost(error: psycopg.Error) -> bool:
    """True for errors that mean the server or the connection to it is gone (not a failed statement)."""
    if isinstance(error, SERVER_GONE):
        return True
    # libpq's own errors (no SQLSTATE: "server closed the connection unexpectedly", "connection is
    # lost") and SQLSTATE class 08, connection exceptions.
    return isinstance(error, psycopg.OperationalError) and (error.sqlstate is None or error.sqlstate.startswith("08"))


class Database:
    """A connection pool plus the schema; open with `open_database`.

    When the server goes away under a command, the pool is closed (no reconnect attempts, no
    warnings) and the command ends with `DatabaseConnectionLost`; a later use in the same process
    (the page, the HTTP server) opens a new pool, restarting the embedded server first.
    """

    def __init__(self, url: str, embedded: bool, data_dir: Path | None = None):
        self.url = url
        self.embedded = embedded
        self._data_dir = data_dir if embedded else None
        self._pool_lock = threading.Lock()
        self._pool: ConnectionPool | None = self._new_pool()
        self._closed = False

    def _new_pool(self) -> ConnectionPool:
        return ConnectionPool(self.url, min_size=1, max_size=4, open=False, configure=_configure,
                              kwargs={"autocommit": False}, timeout=15)

    def open(self) -> Database:
        try:
            with psycopg.connect(self.url, connect_timeout=5, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.OperationalError as error:
            raise DatabaseError(f"Cannot connect to the {self._where()} ({_first_line(error)}); "
                                f"check that it is running and the POSTGRES_* settings are right") from None
        except psycopg.errors.FeatureNotSupported as error:
            raise DatabaseError(f"The database has no pgvector extension ({error}); install pgvector on "
                                f"the server or leave DATABASE_URL empty to use the embedded one") from None
        self._open_pool()
        migrate(self)
        return self

    def _where(self) -> str:
        return "embedded PostgreSQL" if self.embedded else "PostgreSQL at DATABASE_URL/POSTGRES_HOST"

    def _open_pool(self) -> ConnectionPool:
        with self._pool_lock:
            if self._closed:  # never start the server again for a database closed on purpose (at exit)
                raise PoolClosed("the database was closed")
            if self._pool is None:  # lost earlier in this process: start the server again, then a new pool
                if self._data_dir is not None:
                    self.url = embedded_url(self._data_dir)
                self._pool = self._new_pool()
            try:
                self._pool.open(wait=True, timeout=15)
            except PoolTimeout:
                raise DatabaseError(f"Cannot connect to the {self._where()} within 15 s; check that it is "
                                    "running and the POSTGRES_* settings are right") from None
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; the block is one transaction, committed at its end."""
        pool, conn = self._checkout()
        try:
            with conn:
                yield conn
        except psycopg.Error as error:
            if not connection_lost(error):
                raise
            raise self._lost(pool, error) from None
        finally:
            pool.putconn(conn)  # a closed pool just closes it

    @contextmanager
    def dedicated(self) -> Iterator[psycopg.Connection]:
        """A connection of its own, outside the pool, in autocommit: for what lives as long as a
        session does (advisory locks that must end with the process, whatever way it ends)."""
        pool = self._pool if self._pool is not None and not self._pool.closed else self._open_pool()
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=15)
        except psycopg.OperationalError as error:  # the pool's server answered a moment ago
            raise self._lost(pool, error) from None
        try:
            with conn:
                yield conn
        except psycopg.Error as error:
            if not connection_lost(error) or self._pool is None:
                raise
            raise self._lost(self._pool, error) from None

    def _checkout(self) -> tuple[ConnectionPool, psycopg.Connection]:
        pool = self._pool
        if pool is None or pool.closed:
            pool = self._open_pool()
        try:
            return pool, pool.getconn()
        except PoolClosed:
            if self._closed:
                raise
            pool = self._open_pool()  # another thread lost the server and closed this pool
            return pool, pool.getconn()
        except PoolTimeout as error:
            if self._reachable():
                raise  # the server answers: the pool is busy, not gone
            raise self._lost(pool, error) from None

    def _reachable(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _lost(self, pool: ConnectionPool, error: BaseException) -> DatabaseConnectionLost:
        """Close the pool on a server that is gone, and the one sentence that ends the command."""
        with self._pool_lock:
            if self._pool is pool:
                self._pool = None
        pool.close()
        log.debug("Lost the database connection", exc_info=error)
        if self.embedded:
            return DatabaseConnectionLost(
                f"The embedded PostgreSQL stopped while this command was using it ({_first_line(error)}); "
                "everything stored before that is kept: run the same command again (it restarts the server)")
        return DatabaseConnectionLost(
            f"The connection to the {self._where()} was lost ({_first_line(error)}); everything stored "
            "before that is kept: check that the server is running, then run the same command again")

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool, self._closed = self._pool, None, True
        if pool is not None:
            pool.close()

    def pgvector_version(self) -> str | None:
        with self.connection() as conn:
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        return row[0] if row else None

    def server_version(self) -> str:
        with self.connection() as conn:
            return conn.execute("SHOW server_version").fetchone()[0]


def schema_version(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT value FROM askany_meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(db: Database) -> None:
    """Bring the schema to SCHEMA_VERSION; safe to run any number of times, from several processes."""
    with db.connection() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(4242001)")  # one migrator at a time
        conn.execute("CREATE TABLE IF NOT EXISTS askany_meta (key text PRIMARY KEY, value text NOT NULL)")
        current = schema_version(conn)
        if current > SCHEMA_VERSION:
            raise DatabaseError(f"The database schema is version {current}, newer than this AskAny "
                                f"({SCHEMA_VERSION}); upgrade AskAny")
        for version in range(current, SCHEMA_VERSION):
            log.info("Migrating database schema to version %d", version + 1)
            conn.execute(MIGRATIONS[version])
        conn.execute("INSERT INTO askany_meta VALUES ('schema_version', %s) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),))


_lock = threading.Lock()
_open: dict[str, Database] = {}


def open_database(settings: Settings) -> Database:
    """The process's Database for these settings, started and migrated on first call."""
    with _lock:
        if settings.uses_embedded_database:
            url, is_embedded = embedded_url(settings.data_dir), True
        else:
            url, is_embedded = external_url(settings), False
        if url not in _open:
            _open[url] = Database(url, is_embedded, settings.data_dir).open()
        return _open[url]
