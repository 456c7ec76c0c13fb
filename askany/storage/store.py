"""Where chunks are stored and searched: documents, chunks, BM25 terms and pgvector vectors.

A document and all its chunks, terms and vectors are written in one
transaction (`replace_document`), so a query never sees half a document and a
run killed at any moment leaves either the old version or the new one.
Vectors live in `chunk_vectors`, created on first use with the embedding
model's dimension; a chunk without a row there is waiting for its vector.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from askany.core.errors import AskAnyError
from askany.ingestion.keywords import TermBag
from askany.storage.database import Database
from askany.storage.keyword_index import IndexedChunk, KeywordIndex, KeywordIndexCorrupt

REEMBED_COMMAND = "python -m askany.main --reembed"
# Advisory lock keys (the keyword index and migrations use 4242001 and 42420xx of their own).
VECTOR_TABLE_LOCK = 4242002
DOCUMENT_LOCK = 4242003  # with hashtext(kb US source) as the second key


class EmbeddingMismatchError(AskAnyError):
    """Stored vectors were made by another embedding model than the configured one."""


@dataclass
class ChunkRecord:
    node_id: str
    position: int
    text: str
    heading_path: list[str]
    tags: list[str]
    is_faq: bool
    terms: TermBag
    metadata: dict[str, Any] = field(default_factory=dict)
    embedding: np.ndarray | None = None


@dataclass
class DocumentRecord:
    kb: str
    source: str
    title: str
    kind: str
    content_hash: str
    fingerprint: str
    tags: list[str]
    encoding: str | None
    chunks: list[ChunkRecord]


@dataclass
class StoredChunk:
    id: int
    node_id: str
    kb: str
    source: str
    title: str
    position: int
    text: str
    heading_path: list[str]
    tags: list[str]
    is_faq: bool
    metadata: dict[str, Any]


@dataclass
class SearchFilter:
    """Restricts a search to knowledge bases, tags (any of them) and FAQ or document chunks."""

    kbs: list[str] | None = None
    tags: list[str] | None = None
    faq: bool | None = None

    def sql(self, alias: str = "c") -> tuple[str, dict[str, Any]]:
        clauses, params = ["TRUE"], {}
        if self.kbs:
            clauses.append(f"{alias}.kb = ANY(%(f_kbs)s)")
            params["f_kbs"] = list(self.kbs)
        if self.tags:
            clauses.append(f"{alias}.tags && %(f_tags)s::text[]")
            params["f_tags"] = list(self.tags)
        if self.faq is not None:
            clauses.append(f"{alias}.is_faq = %(f_faq)s")
            params["f_faq"] = self.faq
        return " AND ".join(clauses), params


class DocumentClaims:
    """The documents one ingestion run is working on, so that another run (another process, or
    another host against the same Postgres) leaves them to it and takes others: several
    ingestion workers split a folder instead of each parsing and embedding all of it.

    A claim is a session advisory lock on a 64-bit hash of (kb, source), held on a connection of
    the run's own: it ends when the run releases it, or when the process dies however it dies.
    """

    def __init__(self, db: Database):
        self._db = db
        self._connection: contextlib.AbstractContextManager[psycopg.Connection] | None = None
        self._conn: psycopg.Connection | None = None
        self._held: set[int] = set()

    @staticmethod
    def key(kb: str, source: str) -> int:
        digest = hashlib.blake2b(f"{kb}\x1f{source}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    def claim(self, kb: str, sources: list[str]) -> set[str]:
        """The sources this run now holds (those another run holds are left out)."""
        if not sources:
            return set()
        if self._conn is None:
            self._connection = self._db.dedicated()
            self._conn = self._connection.__enter__()
        keys = [self.key(kb, source) for source in sources]
        won = self._conn.execute("SELECT k FROM unnest(%s::bigint[]) AS k WHERE pg_try_advisory_lock(k)",
                                 (keys,)).fetchall()
        won_keys = {row[0] for row in won}
        self._held |= won_keys
        return {source for source, key in zip(sources, keys, strict=True) if key in won_keys}

    def release(self, kb: str, sources: list[str]) -> None:
        keys = [key for key in (self.key(kb, source) for source in sources) if key in self._held]
        if keys and self._conn is not None:
            self._conn.execute("SELECT pg_advisory_unlock(k) FROM unnest(%s::bigint[]) AS k", (keys,))
            self._held -= set(keys)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.__exit__(None, None, None)  # closing the session ends every claim
        self._connection = self._conn = None
        self._held.clear()


def embedding_identity(model_name: str) -> str:
    """A model's name without its organisation or folder, so a hub id and its local copy agree."""
    return Path(model_name.rstrip("/")).name


Analyze = Callable[[list[str]], list[TermBag]]


class ChunkStore:
    """Documents and chunks in Postgres, with their keyword index and vectors.

    `analyze` turns chunk texts into keyword terms; it is needed only when the keyword index
    has to be re-derived from the stored chunks (after an upgrade or damage).
    """

    def __init__(self, db: Database, analyze: Analyze | None = None, k1: float = 1.2, b: float = 0.75,
                 keyword_cache_mb: float = 256.0):
        self.db = db
        self.keywords = KeywordIndex(db, k1=k1, b=b, cache_mb=keyword_cache_mb)
        self._analyze = analyze

    # ------------------------------------------------------------ metadata
    def get_meta(self, key: str) -> str | None:
        with self.db.connection() as conn:
            row = conn.execute("SELECT value FROM askany_meta WHERE key = %s", (key,)).fetchone()
        return row[0] if row else None

    @staticmethod
    def _set_meta(conn: psycopg.Connection, key: str, value: str) -> None:
        conn.execute("INSERT INTO askany_meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = "
                     "excluded.value", (key, value))

    # ------------------------------------------------------------ vectors table
    def vector_model(self) -> tuple[str, int] | None:
        """(model identity, dimension) of the stored vectors, or None before the first vector."""
        name, dim = self.get_meta("embedding_model"), self.get_meta("embedding_dim")
        return (name, int(dim)) if name and dim else None

    def check_vector_model(self, model_name: str, dim: int | None = None) -> None:
        """Raise EmbeddingMismatchError unless the stored vectors come from this model (and dimension,
        when given: without it, the check needs no loaded model)."""
        stored = self.vector_model()
        identity = embedding_identity(model_name)
        if stored and (stored[0] != identity or (dim is not None and stored[1] != dim)):
            shown = f" ({dim} dimensions)" if dim is not None else ""
            raise EmbeddingMismatchError(
                f"The stored vectors were made by {stored[0]} ({stored[1]} dimensions) but EMBEDDING_MODEL is "
                f"{identity}{shown}; re-embed every chunk with: {REEMBED_COMMAND}")

    def ensure_vector_table(self, model_name: str, dim: int) -> None:
        """Create `chunk_vectors` for this model, or check it matches.

        The table starts without its HNSW index, which `ensure_vector_index` builds once the first
        load is in: adding a 1024-dimension vector to an HNSW graph costs ~8 ms on 2 cores, building
        the graph afterwards ~1.5 ms a vector (measured; pgvector recommends the same). Until then a
        vector search is an exact scan, which is correct, and quick at the sizes a first load has."""
        self.check_vector_model(model_name, dim)
        if self.vector_model():
            return
        with self.db.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (VECTOR_TABLE_LOCK,))
            conn.execute(f"CREATE TABLE IF NOT EXISTS chunk_vectors (chunk_id bigint PRIMARY KEY REFERENCES "
                         f"chunks(id) ON DELETE CASCADE, embedding vector({int(dim)}) NOT NULL)")
            self._set_meta(conn, "embedding_model", embedding_identity(model_name))
            self._set_meta(conn, "embedding_dim", str(dim))

    def ensure_vector_index(self, m: int, ef_construction: int) -> bool:
        """Build the HNSW index if the vectors have none (after a first load, or one that was stopped);
        True when it was built now. Later vectors go into it one by one."""
        if not self.vector_model() or self.has_hnsw_index():
            return False
        with self.db.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (VECTOR_TABLE_LOCK,))  # one builder at a time
            if conn.execute("SELECT to_regclass('chunk_vectors_hnsw') IS NOT NULL").fetchone()[0]:
                return False
            self._create_hnsw(conn, m, ef_construction)
        return True

    @staticmethod
    def _create_hnsw(conn: psycopg.Connection, m: int, ef_construction: int) -> None:
        # A graph held in memory while it is built is several times faster than one spilled to disk.
        conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
        # Parallel workers build it 1.6x faster on 2 cores (10.3 s against 16.3 s for 10k random 1024-d
        # vectors), but Postgres sizes them by the heap, which holds only TOAST pointers here, and
        # plans none. The reloption asks for them; the server's max_parallel_maintenance_workers caps it.
        conn.execute("ALTER TABLE chunk_vectors SET (parallel_workers = 8)")
        conn.execute(f"CREATE INDEX IF NOT EXISTS chunk_vectors_hnsw ON chunk_vectors USING hnsw "
                     f"(embedding vector_cosine_ops) WITH (m = {int(m)}, ef_construction = {int(ef_construction)})")

    def rebuild_hnsw_index(self, m: int, ef_construction: int) -> bool:
        """Drop and rebuild the HNSW index (fast after a bulk load); False when there are no vectors yet."""
        if not self.vector_model():
            return False
        with self.db.connection() as conn:
            conn.execute("DROP INDEX IF EXISTS chunk_vectors_hnsw")
            self._create_hnsw(conn, m, ef_construction)
        return True

    def has_hnsw_index(self) -> bool:
        with self.db.connection() as conn:
            return conn.execute("SELECT to_regclass('chunk_vectors_hnsw') IS NOT NULL").fetchone()[0]

    def drop_vectors(self) -> None:
        """Forget every vector and the model that made them (for --reembed)."""
        with self.db.connection() as conn:
            conn.execute("DROP TABLE IF EXISTS chunk_vectors")
            conn.execute("DELETE FROM askany_meta WHERE key IN ('embedding_model', 'embedding_dim')")

    def embed_awaiting(self, limit: int, encode: Callable[[list[str]], Any]) -> list[int]:
        """Claim up to `limit` chunks without a vector, embed them with `encode` and store the vectors,
        in one transaction; returns their ids (none: nothing left that no one else holds).

        The claim is a row lock with SKIP LOCKED: several processes filling vectors at once (workers
        on other hosts, against one Postgres) each take different chunks, and a process that dies
        or whose model server fails mid-batch releases its chunks for the next one."""
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT c.id, c.text FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM chunk_vectors v "
                "WHERE v.chunk_id = c.id) ORDER BY c.id LIMIT %s FOR UPDATE OF c SKIP LOCKED", (limit,)).fetchall()
            if not rows:
                return []
            vectors = encode([text for _, text in rows])
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO chunk_vectors (chunk_id, embedding) VALUES (%s, %s) "
                                "ON CONFLICT (chunk_id) DO NOTHING",
                                [(chunk_id, vector) for (chunk_id, _), vector in zip(rows, vectors, strict=True)])
        return [chunk_id for chunk_id, _ in rows]

    def count_awaiting_vectors(self) -> int:
        with self.db.connection() as conn:
            if not self.vector_model():
                return conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
            return conn.execute("SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM chunk_vectors v "
                                "WHERE v.chunk_id = c.id)").fetchone()[0]

    # ------------------------------------------------------------ documents
    def document_states_of(self, kb: str, sources: list[str]) -> dict[str, tuple[str, str]]:
        """source -> (content_hash, fingerprint) for these documents, those that are stored."""
        with self.db.connection() as conn:
            rows = conn.execute("SELECT source, content_hash, fingerprint FROM documents "
                                "WHERE kb = %s AND source = ANY(%s)", (kb, sources)).fetchall()
        return {source: (content_hash, fingerprint) for source, content_hash, fingerprint in rows}

    def document_states(self, kb: str) -> dict[str, tuple[str, str]]:
        """source -> (content_hash, fingerprint) for every document of a knowledge base."""
        with self.db.connection() as conn:
            rows = conn.execute("SELECT source, content_hash, fingerprint FROM documents WHERE kb = %s",
                                (kb,)).fetchall()
        return {source: (content_hash, fingerprint) for source, content_hash, fingerprint in rows}

    def replace_documents(self, documents: list[DocumentRecord]) -> int:
        """Atomically replace these documents (chunks, keyword index, vectors) in one transaction.

        Returns the chunks written. Small keyword segments are merged afterwards, in their own
        transaction, so a crash there loses nothing. A handful of statements per call, whatever
        the number of documents: round trips, not rows, are what costs here.
        """
        if not documents:
            return 0
        with self.db.connection() as conn:
            documents = self._claim(conn, documents)
            if not documents:
                return 0
            chunks = [(doc, chunk) for doc in documents for chunk in doc.chunks]
            has_vectors = self._has_vector_table(conn)
            conn.execute("DELETE FROM documents d USING unnest(%s::text[], %s::text[]) AS gone(kb, source) "
                         "WHERE d.kb = gone.kb AND d.source = gone.source",
                         ([doc.kb for doc in documents], [doc.source for doc in documents]))
            doc_ids = self._next_ids(conn, "documents", len(documents))
            document_id = {id(doc): doc_id for doc, doc_id in zip(documents, doc_ids, strict=True)}
            with conn.cursor() as cur, cur.copy(
                    "COPY documents (id, kb, source, title, kind, content_hash, fingerprint, tags, encoding, "
                    "chunk_count) FROM STDIN") as copy:
                for doc, doc_id in zip(documents, doc_ids, strict=True):
                    copy.write_row((doc_id, doc.kb, doc.source, doc.title, doc.kind, doc.content_hash,
                                    doc.fingerprint, doc.tags, doc.encoding, len(doc.chunks)))
            ids = self._next_ids(conn, "chunks", len(chunks))
            with conn.cursor() as cur:
                with cur.copy("COPY chunks (id, node_id, document_id, kb, position, text, heading_path, tags, is_faq, "
                              "term_count, metadata) FROM STDIN") as copy:
                    for chunk_id, (doc, chunk) in zip(ids, chunks, strict=True):
                        copy.write_row((chunk_id, chunk.node_id, document_id[id(doc)], doc.kb, chunk.position,
                                        chunk.text, chunk.heading_path, chunk.tags, chunk.is_faq, chunk.terms.total,
                                        json.dumps(chunk.metadata, ensure_ascii=False)))
                vectors = [(chunk_id, chunk.embedding) for chunk_id, (_, chunk) in zip(ids, chunks, strict=True)
                           if chunk.embedding is not None]
                if vectors and has_vectors:  # new chunk ids: a binary COPY, a third of executemany's CPU
                    with cur.copy("COPY chunk_vectors (chunk_id, embedding) FROM STDIN (FORMAT BINARY)") as copy:
                        copy.set_types(["int8", "vector"])
                        for row in vectors:
                            copy.write_row(row)
            parts = self.keywords.add(conn, [IndexedChunk(chunk_id, doc.kb, chunk.is_faq, chunk.terms, chunk.tags)
                                             for chunk_id, (doc, chunk) in zip(ids, chunks, strict=True)])
        self.keywords.maybe_merge(parts)
        return len(chunks)

    @staticmethod
    def _next_ids(conn: psycopg.Connection, table: str, count: int) -> list[int]:
        """`count` ids from a table's serial sequence, so its rows can be written by COPY (which cannot
        return the ids it assigned) and referenced in the same transaction."""
        return [row[0] for row in conn.execute(
            f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, %s)", (count,))]

    @staticmethod
    def _claim(conn: psycopg.Connection, documents: list[DocumentRecord]) -> list[DocumentRecord]:
        """Lock these documents for this transaction and drop the ones already stored as they are.

        Two ingestions of the same files at once (two terminals, a cron job and a user) would both
        insert the same (kb, source) and one would die on the unique key. With a lock per document,
        taken in one global order so two transactions cannot deadlock, the later one waits for the
        earlier to commit, then finds the same content stored and leaves it: the state of one run.
        """
        ChunkStore._lock_documents(conn, [(doc.kb, doc.source) for doc in documents])
        stored = set(conn.execute(
            "SELECT d.kb, d.source, d.content_hash, d.fingerprint FROM documents d "
            "JOIN unnest(%s::text[], %s::text[]) AS wanted(kb, source) USING (kb, source)",
            ([doc.kb for doc in documents], [doc.source for doc in documents])).fetchall())
        return [doc for doc in documents if (doc.kb, doc.source, doc.content_hash, doc.fingerprint) not in stored]

    @staticmethod
    def _lock_documents(conn: psycopg.Connection, documents: list[tuple[str, str]]) -> None:
        """Lock (kb, source) documents for this transaction, in one global order (no deadlocks)."""
        if documents:
            conn.execute("SELECT pg_advisory_xact_lock(%s, h) FROM (SELECT DISTINCT hashtext(k) AS h "
                         "FROM unnest(%s::text[]) AS k ORDER BY h) AS ordered",
                         (DOCUMENT_LOCK, [f"{kb}\x1f{source}" for kb, source in documents]))

    @staticmethod
    def _has_vector_table(conn: psycopg.Connection) -> bool:
        return conn.execute("SELECT to_regclass('chunk_vectors') IS NOT NULL").fetchone()[0]

    def delete_document(self, kb: str, source: str) -> bool:
        return self.delete_documents(kb, [source]) > 0

    def delete_documents(self, kb: str, sources: list[str]) -> int:
        """Delete documents (their chunks, vectors and keyword postings go with them)."""
        if not sources:
            return 0
        with self.db.connection() as conn:
            deleted = conn.execute("DELETE FROM documents WHERE kb = %s AND source = ANY(%s)",
                                   (kb, sources)).rowcount
        if deleted:
            self.keywords.maybe_merge_kb(kb)  # segments left mostly deleted are rewritten
        return deleted

    def list_documents(self, kb: str | None = None) -> list[dict[str, Any]]:
        with self.db.connection() as conn:
            cur = conn.execute(
                "SELECT kb, source, title, kind, chunk_count, tags, ingested_at FROM documents "
                "WHERE %(kb)s::text IS NULL OR kb = %(kb)s ORDER BY kb, source", {"kb": kb})
            names = [column.name for column in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def knowledge_bases(self) -> list[dict[str, Any]]:
        """Every knowledge base with its counts: those holding documents and those created empty."""
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT kb, sum(docs)::bigint, sum(chunks)::bigint, sum(faqs)::bigint FROM ("
                "SELECT d.kb, count(*) AS docs, coalesce(sum(d.chunk_count), 0) AS chunks, "
                "count(*) FILTER (WHERE d.kind = 'faq') AS faqs FROM documents d GROUP BY d.kb "
                "UNION ALL SELECT name, 0, 0, 0 FROM knowledge_bases) AS each GROUP BY kb ORDER BY kb").fetchall()
        return [{"kb": kb, "documents": int(docs), "chunks": int(chunks), "faq_files": int(faqs)}
                for kb, docs, chunks, faqs in rows]

    def create_kb(self, name: str) -> bool:
        """Record a knowledge base before it holds documents; False when it already exists."""
        with self.db.connection() as conn:
            if conn.execute("SELECT EXISTS (SELECT 1 FROM documents WHERE kb = %s)", (name,)).fetchone()[0]:
                return False
            return conn.execute("INSERT INTO knowledge_bases (name) VALUES (%s) ON CONFLICT DO NOTHING",
                                (name,)).rowcount > 0

    def delete_kb(self, name: str) -> tuple[bool, list[str], int]:
        """Delete a knowledge base in one transaction: its documents, chunks, vectors (cascades), keyword
        segments and postings, and its record. (it existed, the sources deleted, chunks deleted)."""
        with self.db.connection() as conn:
            # The same per-document locks an ingestion's write takes: one storing into this kb now
            # finishes first (and is deleted with it) or waits and writes into a kb that is gone.
            sources = [row[0] for row in conn.execute("SELECT source FROM documents WHERE kb = %s ORDER BY source",
                                                      (name,))]
            self._lock_documents(conn, [(name, source) for source in sources])
            gone = conn.execute("DELETE FROM documents WHERE kb = %s RETURNING source, chunk_count",
                                (name,)).fetchall()
            self.keywords.drop_kb(conn, name)
            registered = conn.execute("DELETE FROM knowledge_bases WHERE name = %s", (name,)).rowcount > 0
        return bool(gone) or registered, [row[0] for row in gone], sum(int(row[1]) for row in gone)

    def known_tags(self) -> list[str]:
        with self.db.connection() as conn:
            rows = conn.execute("SELECT DISTINCT unnest(tags) AS tag FROM chunks ORDER BY tag").fetchall()
        return [row[0] for row in rows]

    def missing(self, kbs: list[str], tags: list[str]) -> tuple[list[str], list[str]]:
        """The knowledge bases and tags no chunk has: index lookups, not a scan of every chunk."""
        with self.db.connection() as conn:
            kb_rows = conn.execute("SELECT k FROM unnest(%s::text[]) k WHERE NOT EXISTS "
                                   "(SELECT 1 FROM documents d WHERE d.kb = k)", (kbs,)).fetchall() if kbs else []
            tag_rows = conn.execute("SELECT t FROM unnest(%s::text[]) t WHERE NOT EXISTS "
                                    "(SELECT 1 FROM chunks c WHERE c.tags @> ARRAY[t])", (tags,)).fetchall() if tags else []
        return [row[0] for row in kb_rows], [row[0] for row in tag_rows]

    def has_chunks(self, search_filter: SearchFilter | None = None) -> bool:
        where, params = (search_filter or SearchFilter()).sql()
        with self.db.connection() as conn:
            return conn.execute(f"SELECT EXISTS (SELECT 1 FROM chunks c WHERE {where})", params).fetchone()[0]

    def count_chunks(self, search_filter: SearchFilter | None = None) -> int:
        where, params = (search_filter or SearchFilter()).sql()
        with self.db.connection() as conn:
            return conn.execute(f"SELECT count(*) FROM chunks c WHERE {where}", params).fetchone()[0]

    def sample_chunks(self, limit: int = 3) -> list[StoredChunk]:
        with self.db.connection() as conn:
            ids = [row[0] for row in conn.execute("SELECT id FROM chunks ORDER BY id LIMIT %s", (limit,))]
        return list(self.fetch_chunks(ids).values())

    # ------------------------------------------------------------ search
    def keyword_search(self, terms: list[str], limit: int,
                       search_filter: SearchFilter | None = None) -> list[tuple[int, float]]:
        """BM25 (k1, b from the settings) over the chunks in the filter: (chunk id, score), best first."""
        scope = search_filter or SearchFilter()
        return self.keywords.search(terms, limit, kbs=scope.kbs, tags=scope.tags, faq=scope.faq)

    def ensure_keyword_index(self) -> str:
        """Re-derive the keyword index when it does not match the chunks (checked once a process).

        Returns a notice when it had to be rebuilt, else "".
        """
        return self.keywords.ensure_ready(self._analyzer())

    def repair_keyword_index(self, reason: str) -> str:
        """Rebuild the keyword index after damage was found; returns the notice to show."""
        self.keywords.mark_for_rebuild(reason)
        return self.ensure_keyword_index()

    def _analyzer(self) -> Analyze:
        if self._analyze is None:
            raise KeywordIndexCorrupt("The keyword index must be rebuilt but no analyzer was given")
        return self._analyze

    def vector_search(self, embedding: np.ndarray, limit: int, ef_search: int,
                      search_filter: SearchFilter | None = None) -> list[tuple[int, float]]:
        """Cosine similarity through the HNSW index: (chunk id, similarity), best first."""
        if not self.vector_model():
            return []
        where, params = (search_filter or SearchFilter()).sql()
        params.update(q=np.asarray(embedding, dtype=np.float32), limit=limit)
        with self.db.connection() as conn:
            conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
            # Filtered HNSW scans keep going until enough rows pass the filter (pgvector 0.8).
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            rows = conn.execute(
                f"SELECT c.id, 1 - (v.embedding <=> %(q)s) AS similarity FROM chunk_vectors v "
                f"JOIN chunks c ON c.id = v.chunk_id WHERE {where} "
                f"ORDER BY v.embedding <=> %(q)s LIMIT %(limit)s", params).fetchall()
        rows = [(row[0], float(row[1])) for row in rows]
        return sorted(rows, key=lambda row: -row[1])

    def fetch_chunks(self, ids: list[int]) -> dict[int, StoredChunk]:
        if not ids:
            return {}
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT c.id, c.node_id, c.kb, d.source, d.title, c.position, c.text, c.heading_path, c.tags, "
                "c.is_faq, c.metadata FROM chunks c JOIN documents d ON d.id = c.document_id "
                "WHERE c.id = ANY(%s)", (list(ids),)).fetchall()
        return {row[0]: StoredChunk(*row) for row in rows}

    def fetch_by_node_ids(self, node_ids: list[str]) -> list[StoredChunk]:
        with self.db.connection() as conn:
            ids = [row[0] for row in conn.execute("SELECT id FROM chunks WHERE node_id = ANY(%s)", (node_ids,))]
        return list(self.fetch_chunks(ids).values())

    def chunks_of_document(self, chunk_id: int, radius: int | None = None,
                           limit: int = 5000) -> tuple[StoredChunk | None, list[StoredChunk], int]:
        """(the chunk, the chunks of its document in order, how many the document has): all of them,
        or the `radius` before and after it; at most `limit`. (None, [], 0) for an unknown chunk."""
        with self.db.connection() as conn:
            row = conn.execute("SELECT document_id, position FROM chunks WHERE id = %s", (chunk_id,)).fetchone()
            if row is None:
                return None, [], 0
            document, position = row
            total = conn.execute("SELECT count(*) FROM chunks WHERE document_id = %s", (document,)).fetchone()[0]
            low, high = (position - radius, position + radius) if radius is not None else (None, None)
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM chunks WHERE document_id = %(d)s AND (%(low)s::int IS NULL OR position "
                "BETWEEN %(low)s AND %(high)s) ORDER BY position LIMIT %(limit)s",
                {"d": document, "low": low, "high": high, "limit": limit})]
        found = self.fetch_chunks(ids)
        chunks = [found[i] for i in ids if i in found]
        return next((c for c in chunks if c.id == chunk_id), None) or self.fetch_chunks([chunk_id]).get(chunk_id), \
            chunks, total
