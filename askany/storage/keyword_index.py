"""The BM25 keyword index: immutable segments of compact postings inside Postgres, scored in numpy.

Why this layout (measurements in docs/keyword-index.md): one row per (term, chunk) cost 32 KB
a chunk and seconds a question at 10k chunks; Postgres full text has no IDF; an external engine
(Tantivy) hard-codes k1/b and needs its own crash recovery and catch-up on every host. Here
Postgres stays the only store: a document replace is one transaction, a delete is seen by the
next query on every host, and `kill -9` leaves either the old or the new state.

The layout follows Lucene (format in keyword_segment.py):
- A *partition* is a (knowledge base, FAQ or not) pair, so kb and FAQ filters read only their
  own postings and BM25 statistics cover exactly the filtered scope.
- Each write transaction adds one immutable segment per partition it touches.
- Deleting chunks, by any path, leaves a tombstone (a trigger on `chunks`, same transaction);
  queries skip tombstoned chunks, merges drop them for good.
- Segments of a size class are merged (factor MERGE_FACTOR, up to MAX_SEGMENT_DOCS chunks) in
  their own transaction, so a question reads a handful of rows per term.
- Tags are postings of reserved terms: a tag filter is a union of postings, and its statistics
  cover the tagged chunks only.

A query reads, in one snapshot, the segment list, the tombstones and the rows holding its terms.
Document frequencies, N and the average length come from those, exactly (deleted chunks
excluded), so results do not depend on how segments happen to be merged. Doc lists never
change, so each process caches them.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import psycopg

from askany.core.notices import Notice
from askany.ingestion.keywords import TermBag
from askany.storage.database import Database
from askany.storage.keyword_segment import (
    MAX_LENGTH,
    MAX_SEGMENT_DOCS,
    SEPARATOR,
    BuiltSegment,
    KeywordIndexCorrupt,
    Postings,
    Segment,
    Vocabulary,
    build_segment,
    decode_rows,
    flatten,
    intern_terms,
    term_hash,
)

__all__ = ["IndexedChunk", "KeywordIndex", "KeywordIndexCorrupt", "tag_term"]

log = logging.getLogger(__name__)

MERGE_FACTOR = 4  # more rewriting than Lucene's 10, but a question pays a database lookup per segment
MERGE_MAX_DOCS = MAX_SEGMENT_DOCS  # the format's limit: fewer segments, fewer lookups a question
EXPUNGE_RATIO = 0.25  # a segment with this share of deleted chunks is rewritten
VACUUM_AFTER_ROWS = 20_000  # merges that delete this many rows vacuum the tables, so space is reused
TAG_PREFIX = "\x01tag\x01"  # reserved terms: the analyzer never emits control characters
MERGE_LOCK = 4242010  # advisory lock class; the partition id is the second key
REBUILD_LOCK = 4242011
SEGMENT_COLUMNS = "id, part, docs, chunk_ids, lengths, buckets, frequent"
ROW_COLUMNS = "p.segment, p.bucket, p.names, p.counts, p.postings"

Analyze = Callable[[list[str]], list[TermBag]]


def tag_term(tag: str) -> str:
    return TAG_PREFIX + tag


@dataclass
class IndexedChunk:
    """What the index needs to know of a new chunk: its id, partition, terms and tags."""

    chunk_id: int
    kb: str
    is_faq: bool
    terms: TermBag
    tags: Sequence[str]


class KeywordIndex:
    """BM25 over segmented postings in Postgres; `add` writes inside the caller's transaction."""

    def __init__(self, db: Database, k1: float = 1.2, b: float = 0.75, cache_mb: float = 256):
        """`cache_mb`: memory for postings rows read from the database (KEYWORD_CACHE_MB)."""
        self.db = db
        self.k1 = k1
        self.b = b
        self._rows = RowCache(int(cache_mb * 1024 * 1024))
        self._cache: dict[int, Segment] = {}
        self._scopes: dict[tuple, _Scope] = {}
        self._lock = threading.Lock()
        self._checked = False
        self._parts: dict[tuple[str, bool], int] = {}

    # ------------------------------------------------------------ writing
    def add(self, conn: psycopg.Connection, chunks: Sequence[IndexedChunk]) -> list[int]:
        """Write a segment per partition for these new chunks; returns the partitions, for `maybe_merge`."""
        by_part: dict[int, list[IndexedChunk]] = {}
        for chunk in chunks:
            by_part.setdefault(self._partition(conn, chunk.kb, chunk.is_faq), []).append(chunk)
        for part, members in by_part.items():
            members.sort(key=lambda chunk: chunk.chunk_id)
            for start in range(0, len(members), MAX_SEGMENT_DOCS):
                self._insert(conn, part, _segment_of(members[start:start + MAX_SEGMENT_DOCS]))
        return sorted(by_part)

    def _partition(self, conn: psycopg.Connection, kb: str, is_faq: bool) -> int:
        key = (kb, is_faq)
        if key in self._parts:
            return self._parts[key]
        row = conn.execute("SELECT id FROM keyword_partitions WHERE kb = %s AND is_faq = %s", key).fetchone()
        if row is None:  # created in this transaction: remembered only once it is surely committed
            return conn.execute("INSERT INTO keyword_partitions (kb, is_faq) VALUES (%s, %s) ON CONFLICT (kb, is_faq) "
                                "DO UPDATE SET kb = excluded.kb RETURNING id", key).fetchone()[0]
        self._parts[key] = row[0]
        return row[0]

    @staticmethod
    def _insert(conn: psycopg.Connection, part: int, built: BuiltSegment) -> int:
        segment = conn.execute(
            "INSERT INTO keyword_segments (part, docs, chunk_ids, lengths, buckets, frequent, postings) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (part, len(built.chunk_ids), built.chunk_ids.tobytes(), built.lengths.tobytes(), built.buckets,
             SEPARATOR.join(built.frequent), built.postings)).fetchone()[0]
        with conn.cursor() as cur, cur.copy(
                "COPY keyword_postings (segment, bucket, names, counts, postings) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int4", "bytea", "bytea", "bytea"])
            for bucket, names, counts, postings in built.rows:
                copy.write_row((segment, bucket, names, counts, postings))
        return segment

    # ------------------------------------------------------------ searching
    def search(self, terms: Sequence[str], limit: int, kbs: Sequence[str] | None = None,
               tags: Sequence[str] | None = None, faq: bool | None = None) -> list[tuple[int, float]]:
        """BM25 over the chunks in scope: (chunk id, score), best first, ties by chunk id."""
        query = Counter(term for term in terms if term)
        if not query or limit <= 0:
            return []
        tag_terms = [tag_term(tag) for tag in dict.fromkeys(tags or [])]
        wanted = {term: term_hash(term.encode("utf-8")) for term in [*query, *tag_terms]}
        with self.db.connection() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")  # one snapshot
            segments = self._segments(conn, kbs, faq)
            if not segments:
                return []
            parts = sorted({segment.part for segment in segments})
            dead = [row[0] for row in conn.execute("SELECT chunk_id FROM keyword_deleted WHERE part = ANY(%s)",
                                                   (parts,))]
            terms_at: dict[tuple[int, int], list[str]] = {}
            for segment in segments:
                for term, hashed in wanted.items():
                    terms_at.setdefault((segment.id, segment.bucket(term, hashed)), []).append(term)
            rows = self._fetch(conn, {segment.id: segment for segment in segments}, sorted(terms_at))
        scope = self._scope(segments, dead)
        fenced = {term: SEPARATOR + term.encode("utf-8") + SEPARATOR for term in wanted}
        number = {term: k for k, term in enumerate(wanted)}  # query terms first, then tag terms
        pieces: list[tuple[int, int, np.ndarray, np.ndarray, Postings]] = []
        for key, key_terms in terms_at.items():
            row = rows.get(key)
            if row is not None:
                base = scope.offsets[key[0]]
                for term in key_terms:
                    hit = row.find(fenced[term])
                    if hit is not None:
                        pieces.append((number[term], base, *hit, row))
        return self._score(scope, pieces, list(query.values()), bool(tag_terms), limit)

    def _fetch(self, conn: psycopg.Connection, segments: dict[int, Segment],
               keys: list[tuple[int, int]]) -> dict[tuple[int, int], Postings]:
        """The decoded rows for (segment, bucket) keys: from the cache, the rest from this snapshot."""
        found, missing = self._rows.get_many(keys)
        if missing:
            fetched = conn.execute(
                f"SELECT {ROW_COLUMNS} FROM unnest(%s::int8[], %s::int4[]) AS k(segment, bucket) "
                "JOIN keyword_postings p USING (segment, bucket)",
                ([key[0] for key in missing], [key[1] for key in missing]), binary=True).fetchall()
            decoded = decode_rows([(segments[sid], bucket, *rest) for sid, bucket, *rest in fetched])
            new = {(row.segment.id, sid_bucket[1]): row for row, sid_bucket in zip(decoded, fetched, strict=True)}
            self._rows.put_many(new, missing)  # keys without a row (empty buckets) are remembered too
            found.update(new)
        return found

    def _segments(self, conn: psycopg.Connection, kbs: Sequence[str] | None, faq: bool | None) -> list[Segment]:
        """The live segments in scope, in id order; doc lists from the cache or this snapshot."""
        listed = conn.execute("SELECT s.id, p.kb, p.is_faq FROM keyword_segments s JOIN keyword_partitions p "
                              "ON p.id = s.part ORDER BY s.id").fetchall()
        wanted = [sid for sid, kb, is_faq in listed if (not kbs or kb in kbs) and (faq is None or is_faq == faq)]
        with self._lock:
            live = {row[0] for row in listed}
            for stale in [sid for sid in self._cache if sid not in live]:
                del self._cache[stale]
        return self._load(conn, wanted)

    def _scope(self, segments: list[Segment], dead: list[int]) -> _Scope:
        """Doc lists of these segments concatenated, with lengths and live chunks; the last few are kept."""
        key = (tuple(segment.id for segment in segments), tuple(sorted(dead)))
        with self._lock:
            scope = self._scopes.get(key)
        if scope is None:
            scope = _Scope(segments, dead, self.k1, self.b)
            with self._lock:
                self._scopes[key] = scope
                while len(self._scopes) > 8:
                    self._scopes.pop(next(iter(self._scopes)))
        return scope

    def _score(self, scope: _Scope, pieces: list[tuple[int, int, np.ndarray, np.ndarray, Postings]],
               qtf: list[int], tagged: bool, limit: int) -> list[tuple[int, float]]:
        """BM25 of every chunk holding a query term. A piece is one term's postings in one segment:
        (term number, the segment's offset in the scope, ordinal deltas, tfs, row). Term numbers past
        the query terms are tag terms: with a tag filter, the tagged chunks are the scope."""
        from askany.storage import keyword_kernels as kernels  # numba loads with the first keyword search

        alive, n, norm = scope.alive, scope.n, scope.norm
        if tagged:
            in_tags = np.zeros(len(scope.chunk_ids), dtype=bool)
            tags = [piece for piece in pieces if piece[0] >= len(qtf)]
            if tags:
                deltas, _, starts, bases, limits, _ = _pack(tags)
                _check(kernels.mark(deltas, starts, bases, limits, in_tags))
            alive = in_tags if alive is None else alive & in_tags
            n = int(alive.sum())
            if n == 0:
                return []
            avgdl = float(scope.lengths[alive].mean()) or 1.0
            norm = self.k1 * (1 - self.b + self.b * scope.lengths / avgdl)
        pieces = [piece for piece in pieces if piece[0] < len(qtf)]
        if n == 0 or not pieces:
            return []
        deltas, tfs, starts, bases, limits, terms = _pack(pieces)
        df = np.zeros(len(qtf), dtype=np.int64)
        if alive is None:
            np.add.at(df, terms, np.diff(starts))
        else:  # deleted (or untagged) chunks count neither in df nor in scores
            _check(kernels.count_live(deltas, starts, bases, limits, terms, alive, df))
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5)) * np.asarray(qtf, dtype=np.float64)
        scores = np.zeros(len(scope.chunk_ids))
        _check(kernels.accumulate(deltas, tfs, starts, bases, limits, idf[terms], norm, float(self.k1),
                                  alive if alive is not None else _NO_MASK, alive is not None, scores))
        # Rounded before ranking: sums taken in another order (another segment layout) then tie
        # exactly, and ties go by chunk id, so every host returns the same list.
        scores = np.round(scores, 9)
        matched = np.flatnonzero(scores > 0)
        if len(matched) > limit:
            # Keep every chunk tied with the limit-th score, so ties are broken by chunk id, not by layout.
            cutoff = np.partition(scores[matched], len(matched) - limit)[len(matched) - limit]
            matched = matched[scores[matched] >= cutoff]
        ranked = sorted(zip(scope.chunk_ids[matched].tolist(), scores[matched].tolist(), strict=True),
                        key=lambda hit: (-hit[1], hit[0]))
        return ranked[:limit]

    # ------------------------------------------------------------ merging
    def maybe_merge(self, parts: Iterable[int]) -> int:
        """Merge each partition's same-size segments, rewrite ones with many deletions; returns merges done."""
        merges = deleted_rows = 0
        for part in parts:
            while True:
                rows = self._merge_once(part)
                if rows is None:
                    break
                merges += 1
                deleted_rows += rows
        if deleted_rows >= VACUUM_AFTER_ROWS:
            self._vacuum()
        return merges

    def drop_kb(self, conn: psycopg.Connection, kb: str) -> int:
        """Remove a kb's segments, postings and tombstones in the caller's transaction, which deletes its
        chunks too; returns the segments removed. Waits for merges of its partitions (their locks, in id
        order) and for a rebuild. Partition rows stay: an ingestion may have just looked one up."""
        parts = [row[0] for row in conn.execute(
            "SELECT id FROM keyword_partitions WHERE kb = %s ORDER BY id", (kb,))]
        if not parts:
            return 0
        conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (REBUILD_LOCK,))
        conn.execute("SELECT pg_advisory_xact_lock(%s, part) FROM unnest(%s::int4[]) AS part", (MERGE_LOCK, parts))
        conn.execute("DELETE FROM keyword_postings p USING keyword_segments s WHERE p.segment = s.id "
                     "AND s.part = ANY(%s)", (parts,))
        removed = conn.execute("DELETE FROM keyword_segments WHERE part = ANY(%s)", (parts,)).rowcount
        conn.execute("DELETE FROM keyword_deleted WHERE part = ANY(%s)", (parts,))
        return removed

    def maybe_merge_kb(self, kb: str) -> int:
        """maybe_merge for a knowledge base's partitions (after deletes: segments with many go)."""
        with self.db.connection() as conn:
            parts = [row[0] for row in conn.execute("SELECT id FROM keyword_partitions WHERE kb = %s", (kb,))]
        return self.maybe_merge(parts)

    def _merge_once(self, part: int) -> int | None:
        """One merge in its own transaction: the postings rows it replaced, or None when none was due."""
        with self.db.connection() as conn:
            if not conn.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", (MERGE_LOCK, part)).fetchone()[0]:
                return None  # another process is merging this partition
            conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (REBUILD_LOCK,))  # not while one rebuilds
            listed = [row[0] for row in conn.execute("SELECT id FROM keyword_segments WHERE part = %s ORDER BY id",
                                                     (part,))]
            if len(listed) < 1:
                return None
            segments = self._load(conn, listed)
            dead = np.array([row[0] for row in conn.execute("SELECT chunk_id FROM keyword_deleted WHERE part = %s",
                                                            (part,))], dtype=np.int64)
            chosen = choose_merge([(s.id, len(s.chunk_ids), int(np.isin(s.chunk_ids, dead).sum()) if len(dead) else 0)
                                   for s in segments])
            if not chosen:
                return None
            return self._merge(conn, part, [s for s in segments if s.id in chosen], dead)

    def _load(self, conn: psycopg.Connection, ids: list[int]) -> list[Segment]:
        with self._lock:
            missing = [sid for sid in ids if sid not in self._cache]
        if missing:
            loaded = [Segment.decode(*row) for row in conn.execute(
                f"SELECT {SEGMENT_COLUMNS} FROM keyword_segments WHERE id = ANY(%s)", (missing,), binary=True)]
            with self._lock:
                self._cache.update((segment.id, segment) for segment in loaded)
        with self._lock:
            return [self._cache[sid] for sid in ids]

    def _merge(self, conn: psycopg.Connection, part: int, segments: list[Segment], dead: np.ndarray) -> int:
        """Rewrite `segments` (in id order) as one, without their deleted chunks, in this transaction."""
        from askany.storage.keyword_kernels import group_order

        ids = [segment.id for segment in segments]
        start = dict(zip(ids, np.cumsum([0] + [len(s.chunk_ids) for s in segments]).tolist(), strict=False))
        chunk_ids = np.concatenate([segment.chunk_ids for segment in segments])
        lengths = np.concatenate([segment.lengths for segment in segments])
        keep = ~np.isin(chunk_ids, dead) if len(dead) else np.ones(len(chunk_ids), dtype=bool)
        remap = np.cumsum(keep) - 1  # old position -> new ordinal, where kept
        by_id = {segment.id: segment for segment in segments}
        rows = conn.execute(f"SELECT {ROW_COLUMNS} FROM keyword_postings p WHERE p.segment = ANY(%s) "
                            "ORDER BY p.segment, p.bucket", (ids,), binary=True).fetchall()
        vocabulary, term_of, position, tf = flatten([(by_id[sid], *rest) for sid, *rest in rows], start)
        live = keep[position]
        # Stable by term: rows came in segment order, so each term's positions stay ascending.
        order = group_order(term_of[live], len(vocabulary))
        term_of, doc, tf = term_of[live][order], remap[position[live]][order], tf[live][order]
        if keep.any():
            used = np.flatnonzero(np.bincount(term_of, minlength=len(vocabulary)))  # terms only in deleted chunks go
            renumber = np.full(len(vocabulary), -1, dtype=np.int64)
            renumber[used] = np.arange(len(used))
            kept = Vocabulary(vocabulary.data, vocabulary.starts[used], vocabulary.ends[used], vocabulary.hashes[used])
            built = build_segment(chunk_ids[keep], lengths[keep], kept, renumber[term_of], doc, tf)
            self._insert(conn, part, built)
        conn.execute("DELETE FROM keyword_postings WHERE segment = ANY(%s)", (ids,))
        conn.execute("DELETE FROM keyword_segments WHERE id = ANY(%s)", (ids,))
        dropped = chunk_ids[~keep]
        if len(dropped):
            conn.execute("DELETE FROM keyword_deleted WHERE part = %s AND chunk_id = ANY(%s)", (part, dropped.tolist()))
        log.debug("Merged keyword segments %s of partition %d: %d chunks kept", ids, part, int(keep.sum()))
        return len(rows)

    def _vacuum(self) -> None:
        """Let Postgres reuse the space merges freed (VACUUM cannot run inside a transaction)."""
        try:
            with psycopg.connect(self.db.url, autocommit=True) as conn:
                conn.execute("VACUUM keyword_postings, keyword_segments, keyword_deleted")
        except psycopg.Error as error:  # autovacuum will do it later
            log.info("VACUUM of the keyword tables skipped: %s", error)

    # ------------------------------------------------------------ checking and rebuilding
    def needs_rebuild(self) -> str:
        """Why the index cannot be trusted (the reason), or "" when it matches the chunks table."""
        with self.db.connection() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")  # one snapshot
            return _mismatch(conn)

    def rebuild(self, analyze: Analyze, batch: int = 4096, only_if_needed: bool = False) -> int | None:
        """Re-derive the whole index from the chunks table in one transaction; returns the chunks indexed.

        With `only_if_needed`, nothing is done when, once the lock is held, the index turns out to
        match the chunks (two processes noticed the same damage)."""
        with self.db.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (REBUILD_LOCK,))  # merges wait, as do other rebuilds
            conn.execute("LOCK TABLE chunks IN SHARE MODE")  # writers wait; queries keep reading the old index
            if only_if_needed and not _mismatch(conn):
                return None  # another process rebuilt it while this one waited
            for table in ("keyword_postings", "keyword_segments", "keyword_deleted"):
                conn.execute(f"DELETE FROM {table}")  # not TRUNCATE, which would block queries too
            done, last = 0, 0
            parts: set[int] = set()
            while True:
                rows = conn.execute("SELECT id, kb, is_faq, text, tags FROM chunks WHERE id > %s ORDER BY id LIMIT %s",
                                    (last, batch)).fetchall()
                if not rows:
                    break
                terms = analyze([row[3] for row in rows])
                parts.update(self.add(conn, [IndexedChunk(row[0], row[1], row[2], chunk_terms, row[4])
                                             for row, chunk_terms in zip(rows, terms, strict=True)]))
                last, done = rows[-1][0], done + len(rows)
            conn.execute("DELETE FROM askany_meta WHERE key = 'keyword_index_rebuild'")
        with self._lock:
            self._cache.clear()
        self.maybe_merge(parts)
        return done

    def ensure_ready(self, analyze: Analyze) -> str:
        """Check the index once a process; rebuild it when it does not match. Returns a notice or ""."""
        if self._checked:
            return ""
        reason = self.needs_rebuild()
        notice = ""
        if reason:
            log.warning("Rebuilding the keyword index: %s", reason)
            count = self.rebuild(analyze, only_if_needed=True)
            if count is not None:
                notice = Notice("keyword_rebuilt", reason=reason, count=count)
        self._checked = True
        return notice

    def mark_for_rebuild(self, reason: str) -> None:
        self._checked = False
        with self.db.connection() as conn:
            conn.execute("INSERT INTO askany_meta VALUES ('keyword_index_rebuild', %s) ON CONFLICT (key) "
                         "DO UPDATE SET value = excluded.value", (reason,))

    def dump(self) -> dict[int, tuple[int, dict[str, int]]]:
        """Every live chunk's (length, {term: tf}), decoded: for checks and tests, not for speed."""
        with self.db.connection() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            segments = [Segment.decode(*row) for row in conn.execute(
                f"SELECT {SEGMENT_COLUMNS} FROM keyword_segments ORDER BY id", binary=True)]
            dead = {row[0] for row in conn.execute("SELECT chunk_id FROM keyword_deleted")}
            rows = conn.execute(f"SELECT {ROW_COLUMNS} FROM keyword_postings p", binary=True).fetchall()
        if not segments:
            return {}
        by_id = {segment.id: segment for segment in segments}
        offsets = _offsets(segments)
        chunk_ids = np.concatenate([segment.chunk_ids for segment in segments]).tolist()
        lengths = np.concatenate([segment.lengths for segment in segments]).tolist()
        content = {chunk_id: (length, {}) for chunk_id, length in zip(chunk_ids, lengths, strict=True)
                   if chunk_id not in dead}
        vocabulary, term_of, position, tf = flatten([(by_id[sid], *rest) for sid, *rest in rows], offsets)
        names = [vocabulary.name(i).decode("utf-8") for i in range(len(vocabulary))]
        for term, at, count in zip(term_of.tolist(), position.tolist(), tf.tolist(), strict=True):
            if chunk_ids[at] in content:
                content[chunk_ids[at]][1][names[term]] = count
        return content

    def size_bytes(self) -> dict[str, int]:
        """On-disk size of every table the keyword channel uses (indexes and TOAST included)."""
        with self.db.connection() as conn:
            return {name: conn.execute("SELECT pg_total_relation_size(%s)", (name,)).fetchone()[0]
                    for name in ("keyword_postings", "keyword_segments", "keyword_deleted", "keyword_partitions")}


class RowCache:
    """Decoded postings rows by (segment, bucket), least recently used first out, within a byte budget.

    Rows never change once written (a merge writes a new segment), so a cached row is never stale;
    rows of segments that are gone simply age out.
    """

    def __init__(self, budget: int):
        self.budget = budget
        self.used = 0
        self._rows: OrderedDict[tuple[int, int], Postings | None] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, keys: list[tuple[int, int]]) -> tuple[dict[tuple[int, int], Postings], list[tuple[int, int]]]:
        found, missing = {}, []
        with self._lock:
            for key in keys:
                if key in self._rows:
                    self._rows.move_to_end(key)
                    row = self._rows[key]
                    if row is not None:
                        found[key] = row
                else:
                    missing.append(key)
        return found, missing

    def put_many(self, rows: dict[tuple[int, int], Postings], keys: list[tuple[int, int]]) -> None:
        if self.budget <= 0:
            return
        with self._lock:
            for key in keys:
                row = rows.get(key)
                if key not in self._rows:
                    self._rows[key] = row
                    self.used += row.nbytes if row is not None else 64
            while self.used > self.budget and self._rows:
                _, row = self._rows.popitem(last=False)
                self.used -= row.nbytes if row is not None else 64


_NO_MASK = np.ones(1, dtype=bool)


def _pack(pieces: list[tuple[int, int, np.ndarray, np.ndarray, Postings]]) -> tuple[np.ndarray, ...]:
    """Pieces back to back for the kernels: (deltas, tfs, starts, bases, limits, term numbers)."""
    starts = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum([len(piece[2]) for piece in pieces], out=starts[1:])
    bases = np.array([piece[1] for piece in pieces], dtype=np.int64)
    limits = bases + np.array([len(piece[4].segment.chunk_ids) for piece in pieces], dtype=np.int64)
    return (np.concatenate([piece[2] for piece in pieces], dtype=np.uint16),
            np.concatenate([piece[3] for piece in pieces]), starts, bases, limits,
            np.array([piece[0] for piece in pieces], dtype=np.int64))


def _check(status: int) -> None:
    if status < 0:
        raise KeywordIndexCorrupt("the keyword index has postings outside their chunk lists")


class _Scope:
    """The segments a query reads, concatenated: chunk ids, lengths, live chunks, BM25 length norms."""

    def __init__(self, segments: list[Segment], dead: list[int], k1: float, b: float):
        self.offsets = _offsets(segments)
        self.chunk_ids = np.concatenate([segment.chunk_ids for segment in segments])
        self.lengths = np.concatenate([segment.lengths for segment in segments]).astype(np.float64)
        self.alive = ~np.isin(self.chunk_ids, np.asarray(dead, dtype=np.int64)) if dead else None
        live = self.lengths if self.alive is None else self.lengths[self.alive]
        self.n = len(live)
        avgdl = float(live.mean()) if len(live) else 1.0
        self.norm = k1 * (1 - b + b * self.lengths / (avgdl or 1.0))


def _mismatch(conn: psycopg.Connection) -> str:
    """Why the stored index does not match the chunks (a flag left for a rebuild, or counts), or ""."""
    flagged = conn.execute("SELECT value FROM askany_meta WHERE key = 'keyword_index_rebuild'").fetchone()
    if flagged:
        return flagged[0]
    chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
    docs = conn.execute("SELECT coalesce(sum(docs), 0) FROM keyword_segments").fetchone()[0]
    dead = conn.execute("SELECT count(*) FROM keyword_deleted").fetchone()[0]
    indexed = int(docs) - int(dead)
    return f"it holds {indexed} chunks but the database has {chunks}" if indexed != chunks else ""


def _offsets(segments: list[Segment]) -> dict[int, int]:
    """Where each segment's ordinals start in the concatenation of the segments' doc lists."""
    starts = np.cumsum([0] + [len(segment.chunk_ids) for segment in segments]).tolist()
    return {segment.id: start for segment, start in zip(segments, starts, strict=False)}


def _segment_of(chunks: Sequence[IndexedChunk]) -> BuiltSegment:
    """A new segment from chunks (ascending ids): their term bags, tags as reserved terms.

    The terms go to the compiled kernels as one UTF-8 buffer: numbering them in a Python dict
    costs about 0.3 microseconds a term, several times the rest of the work.
    """
    names: list[str] = []
    counts: list[np.ndarray] = []
    per_chunk = np.empty(len(chunks), dtype=np.int64)
    for ordinal, chunk in enumerate(chunks):
        bag_counts = np.frombuffer(chunk.terms.counts, dtype="<u2")
        if len(bag_counts):
            names.append(chunk.terms.names)
            counts.append(bag_counts)
        tags = list(dict.fromkeys(chunk.tags))
        names.extend(tag_term(tag) for tag in tags)
        counts.append(np.ones(len(tags), dtype="<u2"))
        per_chunk[ordinal] = len(bag_counts) + len(tags)
    ids, vocabulary = intern_terms("\x00".join(names).encode("utf-8"))
    docs = np.repeat(np.arange(len(chunks), dtype=np.int64), per_chunk)
    tf = np.concatenate(counts).astype(np.int64) if counts else np.array([], dtype=np.int64)
    lengths = np.minimum([chunk.terms.total for chunk in chunks], MAX_LENGTH)
    return build_segment(np.array([chunk.chunk_id for chunk in chunks], dtype="<i8"), lengths, vocabulary,
                         ids, docs, tf)


def choose_merge(segments: list[tuple[int, int, int]]) -> list[int]:
    """Which segments (id, docs, deleted) to merge next: a log-structured policy like Lucene's.

    Segments fall into size classes of a factor MERGE_FACTOR; when a class holds MERGE_FACTOR
    segments, as many of them as fit in MERGE_MAX_DOCS live chunks become one. Segments of at
    least half that size are left alone, unless a segment's deleted share reaches EXPUNGE_RATIO:
    then it is rewritten alone.
    """
    for sid, docs, deleted in segments:
        if deleted and deleted >= EXPUNGE_RATIO * docs:
            return [sid]
    by_class: dict[int, list[tuple[int, int]]] = {}
    for sid, docs, deleted in segments:
        live = docs - deleted
        if live >= MERGE_MAX_DOCS // 2:
            continue  # full enough: left alone unless deletions pile up
        by_class.setdefault(int(math.log(max(live, 1), MERGE_FACTOR)), []).append((sid, live))
    for members in by_class.values():
        if len(members) < MERGE_FACTOR:
            continue
        chosen, size = [], 0
        for sid, live in sorted(members, key=lambda item: (item[1], item[0])):
            if size + live > MERGE_MAX_DOCS:
                break
            chosen.append(sid)
            size += live
        if len(chosen) >= 2:
            return sorted(chosen)
    return []
