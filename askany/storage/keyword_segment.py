"""The stored format of a keyword segment: rows built from postings, and decoded back.

A segment holds the chunks one transaction (or one merge) wrote for one partition:
- a doc list: chunk ids (int64) and lengths in terms (uint16), indexed by ordinal;
- postings rows. A term with at least FREQUENT_POSTINGS postings has a row of its own
  (bucket `buckets + i`, listed in the segment's `frequent` names); the other terms share
  hash buckets (FNV-1a of the term modulo `buckets`, about TERMS_PER_BUCKET terms a row), so
  the many rare terms of Chinese text (most bigrams occur once) cost a few bytes each rather
  than a table row each.

A row is (bucket, names, counts, postings): its terms NUL-separated; how many postings each
has (uint8 each in a bucket row, where every count is below 256; one uint32 in a term's own
row); then the postings of all its terms, columnar: ordinal deltas within each term (the
first one absolute), 1 byte each when they all fit, else 2, followed by one tf byte each.

Everything here is numpy and bytes; the database side is in keyword_index.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from askany.core.errors import AskAnyError

MAX_SEGMENT_DOCS = 1 << 16  # ordinals and deltas fit in uint16
MAX_TF = 255  # more repeats of a term in one chunk count as 255 (its score changes by < 2 %)
MAX_LENGTH = 65535
FREQUENT_POSTINGS = 256  # also keeps every count in a bucket row below 256
TERMS_PER_BUCKET = 64
SEPARATOR = b"\x00"  # Postgres text cannot hold NUL, so no term contains it


class KeywordIndexCorrupt(AskAnyError):
    """Stored keyword-index data cannot be decoded or does not match the chunks."""


def term_hash(term: bytes) -> int:
    """FNV-1a (64 bits) of a term's UTF-8 bytes, as keyword_kernels computes it while building rows;
    stable across processes and hosts (Python's hash() is not)."""
    h = 0xCBF29CE484222325
    for byte in term:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


@dataclass
class Vocabulary:
    """Distinct terms as slices of one UTF-8 buffer, with their FNV-1a hashes."""

    data: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    hashes: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def name(self, i: int) -> bytes:
        return self.data[self.starts[i]:self.ends[i]].tobytes()


def intern_terms(blob: bytes) -> tuple[np.ndarray, Vocabulary]:
    """Number the NUL-separated terms of `blob`: (number of each occurrence, the distinct terms)."""
    from askany.storage.keyword_kernels import intern

    data = np.frombuffer(blob, dtype=np.uint8)
    if not len(data):
        empty = np.array([], dtype=np.int64)
        return empty, Vocabulary(data, empty, empty, np.array([], dtype=np.uint64))
    separators = np.flatnonzero(data == 0)
    starts = np.concatenate([[0], separators + 1])
    ends = np.concatenate([separators, [len(data)]])
    ids, firsts, hashes = intern(data, starts, ends)
    return ids, Vocabulary(data, starts[firsts], ends[firsts], hashes)


@dataclass
class BuiltSegment:
    chunk_ids: np.ndarray
    lengths: np.ndarray
    buckets: int
    frequent: list[bytes]
    rows: list[tuple[int, bytes, bytes, bytes]]
    postings: int


def build_segment(chunk_ids: np.ndarray, lengths: np.ndarray, vocabulary: Vocabulary, term_of: np.ndarray,
                  doc: np.ndarray, tf: np.ndarray) -> BuiltSegment:
    """Rows for a segment from its postings: (term number, ordinal, tf), ordinals ascending within a term."""
    from askany.storage.keyword_kernels import gather_names, group_order

    terms = len(vocabulary)
    counts = np.bincount(term_of, minlength=terms).astype(np.int64)
    frequent_at = np.flatnonzero(counts >= FREQUENT_POSTINGS)
    buckets = max(1, math.ceil((terms - len(frequent_at)) / TERMS_PER_BUCKET))
    bucket_of = (vocabulary.hashes % np.uint64(buckets)).astype(np.int64)
    bucket_of[frequent_at] = buckets + np.arange(len(frequent_at))
    order = group_order(bucket_of, buckets + len(frequent_at))  # terms grouped by row
    rank = np.empty(terms, dtype=np.int64)
    rank[order] = np.arange(terms)
    sort = group_order(rank[term_of], terms)  # postings grouped by row, then term; ordinals stay ascending
    docs, tfs = doc[sort].astype(np.int64), np.minimum(tf[sort], MAX_TF).astype(np.uint8)
    sorted_counts = counts[order]
    starts = np.concatenate([[0], np.cumsum(sorted_counts)])
    deltas = np.diff(docs, prepend=0)
    firsts = starts[:-1][sorted_counts > 0]
    deltas[firsts] = docs[firsts]  # each term starts absolute
    sorted_buckets = bucket_of[order]
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_buckets)) + 1, [terms]]).astype(np.int64)
    names, name_at = gather_names(vocabulary.data, vocabulary.starts, vocabulary.ends, order, cuts)
    names = names.tobytes()
    posting_cuts = starts[cuts]
    widest = np.maximum.reduceat(deltas, posting_cuts[:-1]) if len(deltas) else np.zeros(0, dtype=np.int64)
    rows = []
    for r in range(len(cuts) - 1):
        a, z = int(posting_cuts[r]), int(posting_cuts[r + 1])
        bucket = int(sorted_buckets[cuts[r]])
        row_counts = sorted_counts[cuts[r]:cuts[r + 1]]
        encoded_counts = row_counts.astype("<u4" if bucket >= buckets else np.uint8).tobytes()
        width = "u1" if int(widest[r]) < 256 else "<u2"
        rows.append((bucket, names[name_at[r]:name_at[r + 1]], encoded_counts,
                     deltas[a:z].astype(width).tobytes() + tfs[a:z].tobytes()))
    return BuiltSegment(np.asarray(chunk_ids, dtype="<i8"), np.asarray(lengths, dtype="<u2"), buckets,
                        [vocabulary.name(i) for i in frequent_at.tolist()], rows, len(docs))


@dataclass
class Segment:
    """A stored segment's doc list and term directory, as queries and merges read it."""

    id: int
    part: int
    chunk_ids: np.ndarray
    lengths: np.ndarray
    buckets: int
    frequent: dict[str, int] = field(default_factory=dict)  # term -> its own row's bucket

    @classmethod
    def decode(cls, segment_id: int, part: int, docs: int, chunk_ids: bytes, lengths: bytes, buckets: int,
               frequent: bytes) -> Segment:
        if len(chunk_ids) != 8 * docs or len(lengths) != 2 * docs or not 0 < docs <= MAX_SEGMENT_DOCS or buckets < 1:
            raise KeywordIndexCorrupt(f"keyword segment {segment_id} has a damaged chunk list")
        names = [name.decode("utf-8") for name in frequent.split(SEPARATOR)] if frequent else []
        return cls(segment_id, part, np.frombuffer(chunk_ids, dtype="<i8"), np.frombuffer(lengths, dtype="<u2"),
                   buckets, {name: buckets + i for i, name in enumerate(names)})

    def bucket(self, term: str, hashed: int) -> int:
        """The row a term of this segment is in; `hashed` is its term_hash."""
        return self.frequent.get(term, hashed % self.buckets)


class Postings:
    """A stored postings row, as a query reads it: a question needs one or two of a bucket row's terms,
    so nothing is decoded up front; `find` locates a term in the raw names with one C-level search
    and returns its undecoded ordinal deltas (the kernels decode them). Cached rows cost about their
    stored size in memory."""

    __slots__ = ("segment", "names", "starts", "width", "deltas", "tfs", "size")

    def __init__(self, segment: Segment, bucket: int, names: bytes, counts: bytes, postings: bytes):
        own = bucket >= segment.buckets
        row_counts = np.frombuffer(counts, dtype="<u4" if own else np.uint8)
        total = int(row_counts.sum(dtype=np.int64))
        width, rest = divmod(len(postings) - total, total) if total else (1, 0)
        if rest or width not in (1, 2) or (own and len(row_counts) != 1) or names.count(SEPARATOR) + 1 != len(row_counts):
            raise KeywordIndexCorrupt(f"keyword segment {segment.id} has damaged postings")
        self.segment, self.width = segment, width
        self.names = SEPARATOR + names + SEPARATOR  # every term between two separators
        self.starts = np.zeros(len(row_counts) + 1, dtype=np.int64)
        np.cumsum(row_counts, out=self.starts[1:])
        self.deltas = np.frombuffer(postings, dtype="u1" if width == 1 else "<u2", count=total)
        self.tfs = np.frombuffer(postings, dtype=np.uint8, offset=width * total)
        self.size = len(postings) + len(names) + 8 * len(row_counts) + 300

    def find(self, fenced: bytes) -> tuple[np.ndarray, np.ndarray] | None:
        """(ordinal deltas, tfs) of a term given as SEPARATOR + term + SEPARATOR, or None when absent."""
        at = self.names.find(fenced)
        if at < 0:
            return None
        i = self.names.count(SEPARATOR, 0, at)  # the terms before it
        a, z = self.starts[i:i + 2].tolist()
        return self.deltas[a:z], self.tfs[a:z]

    @property
    def nbytes(self) -> int:
        return self.size


def decode_rows(rows: list[tuple[Segment, int, bytes, bytes, bytes]]) -> list[Postings]:
    """(segment, bucket, names, counts, postings) rows as Postings."""
    return [Postings(*row) for row in rows]


def flatten(rows: list[tuple[Segment, int, bytes, bytes, bytes]],
            start: dict[int, int]) -> tuple[Vocabulary, np.ndarray, np.ndarray, np.ndarray]:
    """Every posting of stored rows (segment, bucket, names, counts, postings), for merges: the distinct
    terms, and per posting the term's number, its position in the concatenated doc lists (segment
    start + ordinal) and its tf. All of it in one compiled pass, not row by row."""
    from askany.storage.keyword_kernels import decode_rows as decode

    ids, vocabulary = intern_terms(SEPARATOR.join(names for _, _, names, _, _ in rows) if rows else b"")
    if not rows:
        return vocabulary, ids, ids, np.array([], dtype=np.uint8)
    counts, widths, terms = [], np.empty(len(rows), dtype=np.int64), np.empty(len(rows), dtype=np.int64)
    for r, (segment, bucket, _, row_counts, postings) in enumerate(rows):
        found = np.frombuffer(row_counts, dtype="<u4" if bucket >= segment.buckets else np.uint8)
        total = int(found.sum(dtype=np.int64))
        width, rest = divmod(len(postings) - total, total) if total else (1, 0)
        if rest or width not in (1, 2):
            raise KeywordIndexCorrupt(f"keyword segment {segment.id} has damaged postings")
        counts.append(found)
        widths[r], terms[r] = width, len(found)
    term_counts = np.concatenate(counts).astype(np.int64)
    if len(term_counts) != len(ids):
        raise KeywordIndexCorrupt("keyword segments have damaged term lists")
    row_at = np.zeros(len(rows), dtype=np.int64)
    np.cumsum([len(postings) for *_, postings in rows[:-1]], out=row_at[1:])
    total = int(term_counts.sum())
    positions = np.empty(total, dtype=np.int64)
    tfs = np.empty(total, dtype=np.uint8)
    status = decode(np.frombuffer(b"".join(postings for *_, postings in rows), dtype=np.uint8), row_at, widths,
                    np.array([start[segment.id] for segment, *_ in rows], dtype=np.int64),
                    np.array([len(segment.chunk_ids) for segment, *_ in rows], dtype=np.int64),
                    terms, term_counts, positions, tfs)
    if status < 0:
        raise KeywordIndexCorrupt("keyword segments have postings outside their chunk lists")
    return vocabulary, np.repeat(ids, term_counts), positions, tfs


def load_kernels() -> None:
    """Load the compiled kernels that building and merging segments use, on a two-chunk segment.

    numba reads each kernel from its cache at its first call, about 0.8 s in all a process: a
    benchmark pays it before timing, as it pays a model load."""
    term_of, vocabulary = intern_terms(b"a\x00b\x00a")
    built = build_segment(np.array([1, 2], dtype="<i8"), np.array([2, 1], dtype="<u2"), vocabulary, term_of,
                          np.array([0, 0, 1], dtype=np.int64), np.ones(3, dtype=np.int64))
    segment = Segment(0, 0, built.chunk_ids, built.lengths, built.buckets)
    flatten([(segment, *row) for row in built.rows], {0: 0})
