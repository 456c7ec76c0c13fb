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
from psycopg_pool import ConnectionPool

from askany.core.config import Settings
from askany.core.errors import DatabaseError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2

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
]


def embedded_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in DATA_DIR/pgdata and return its URL."""
    import pgserver

    pgdata = (data_dir / "pgdata").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as error:  # pgserver raises CalledProcessError/TimeoutExpired/AssertionError
        raise DatabaseError(f"The embedded PostgreSQL in {pgdata} did not start ({type(error).__name__}); "
                            f"see {pgdata / 'log'} or set DATABASE_URL to an external server") from None
    return server.get_uri()


def external_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    password = f":{quote(settings.postgres_password)}" if settings.postgres_password else ""
    return (f"postgresql://{quote(settings.postgres_user)}{password}@{settings.postgres_host}:"
            f"{settings.postgres_port}/{quote(settings.postgres_db)}")


def _configure(connection: psycopg.Connection) -> None:
    register_vector(connection)


class Database:
    """A connection pool plus the schema; open with `open_database`."""

    def __init__(self, url: str, embedded: bool):
        self.url = url
        self.embedded = embedded
        self._pool = ConnectionPool(url, min_size=1, max_size=4, open=False, configure=_configure,
                                    kwargs={"autocommit": False}, timeout=15)

    def open(self) -> Database:
        try:
            with psycopg.connect(self.url, connect_timeout=5, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.OperationalError as error:
            where = "embedded PostgreSQL" if self.embedded else "PostgreSQL at DATABASE_URL/POSTGRES_HOST"
            raise DatabaseError(f"Cannot connect to the {where} ({str(error).strip().splitlines()[0]}); "
                                f"check that it is running and the POSTGRES_* settings are right") from None
        except psycopg.errors.FeatureNotSupported as error:
            raise DatabaseError(f"The database has no pgvector extension ({error}); install pgvector on "
                                f"the server or leave DATABASE_URL empty to use the embedded one") from None
        self._pool.open(wait=True, timeout=15)
        migrate(self)
        return self

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; the block is one transaction, committed at its end."""
        with self._pool.connection() as conn:
            yield conn

    def close(self) -> None:
        self._pool.close()

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
            url, embedded = embedded_url(settings.data_dir), True
        else:
            url, embedded = external_url(settings), False
        if url not in _open:
            _open[url] = Database(url, embedded).open()
        return _open[url]
