"""The loops over postings that BM25 runs per question, compiled with numba.

numpy needs a dozen passes over the postings for BM25 (decode deltas, gather lengths, four
arithmetic steps, accumulate): about 24 ns a posting on these 2-core machines, 40 ms for a
question of common characters over 100k chunks. One compiled pass takes about 3 ns.

A *piece* is one term's postings in one segment: ordinal deltas (the first one absolute) and
term frequencies, stored back to back for all pieces; `starts` delimits them, `bases` is where
each piece's segment begins in the scope's concatenated doc lists, `limits` where it ends.
Every kernel returns -1 when a piece points outside its segment (damaged data), else 0.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def count_live(deltas: np.ndarray, starts: np.ndarray, bases: np.ndarray, limits: np.ndarray,
               terms: np.ndarray, alive: np.ndarray, df: np.ndarray) -> int:
    """df[term] += the live postings of each piece."""
    for p in range(len(starts) - 1):
        position = bases[p]
        live = 0
        for j in range(starts[p], starts[p + 1]):
            position += deltas[j]
            if position >= limits[p]:
                return -1
            if alive[position]:
                live += 1
        df[terms[p]] += live
    return 0


@njit(cache=True, nogil=True)
def mark(deltas: np.ndarray, starts: np.ndarray, bases: np.ndarray, limits: np.ndarray, out: np.ndarray) -> int:
    """out[position] = True for every posting (the chunks a tag filter keeps)."""
    for p in range(len(starts) - 1):
        position = bases[p]
        for j in range(starts[p], starts[p + 1]):
            position += deltas[j]
            if position >= limits[p]:
                return -1
            out[position] = True
    return 0


@njit(cache=True, nogil=True)
def accumulate(deltas: np.ndarray, tfs: np.ndarray, starts: np.ndarray, bases: np.ndarray, limits: np.ndarray,
               weights: np.ndarray, norm: np.ndarray, k1: float, alive: np.ndarray, check_alive: bool,
               scores: np.ndarray) -> int:
    """scores[chunk] += weight * tf (k1 + 1) / (tf + norm[chunk]) over every (live) posting.

    `weights` is the piece's idf times the query's count of the term; `norm` is
    k1 (1 - b + b length / avgdl) per chunk.
    """
    for p in range(len(starts) - 1):
        position = bases[p]
        weight = weights[p]
        for j in range(starts[p], starts[p + 1]):
            position += deltas[j]
            if position >= limits[p]:
                return -1
            if check_alive and not alive[position]:
                continue
            tf = tfs[j]
            scores[position] += weight * tf * (k1 + 1.0) / (tf + norm[position])
    return 0


@njit(cache=True, nogil=True)
def group_order(keys: np.ndarray, groups: int) -> np.ndarray:
    """The stable order that groups `keys` (0 .. groups - 1) together: a counting sort, one pass."""
    counts = np.zeros(groups + 1, dtype=np.int64)
    for key in keys:
        counts[key + 1] += 1
    for g in range(groups):
        counts[g + 1] += counts[g]
    order = np.empty(len(keys), dtype=np.int64)
    for i in range(len(keys)):
        key = keys[i]
        order[counts[key]] = i
        counts[key] += 1
    return order


FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


@njit(cache=True, nogil=True)
def _fnv(data: np.ndarray, start: int, end: int) -> np.uint64:
    h = FNV_OFFSET
    for i in range(start, end):
        h = (h ^ np.uint64(data[i])) * FNV_PRIME
    return h


@njit(cache=True, nogil=True)
def _same(data: np.ndarray, a: int, z: int, b: int, y: int) -> bool:
    if y - b != z - a:
        return False
    for k in range(z - a):
        if data[a + k] != data[b + k]:
            return False
    return True


@njit(cache=True, nogil=True)
def intern(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Number the distinct terms among occurrences data[starts[i]:ends[i]] (bytes compared exactly).

    Returns (number of each occurrence, first occurrence of each distinct term, its FNV-1a hash).
    An open-addressing table that grows with the distinct terms, so it stays small enough for the
    CPU caches (a table sized for every occurrence was four times slower).
    """
    n = len(starts)
    capacity = 1024
    slots = np.full(capacity, -1, dtype=np.int64)
    slot_hash = np.zeros(capacity, dtype=np.uint64)
    firsts = np.empty(n, dtype=np.int64)
    hashes = np.empty(n, dtype=np.uint64)
    ids = np.empty(n, dtype=np.int64)
    distinct = 0
    for i in range(n):
        a, z = starts[i], ends[i]
        h = _fnv(data, a, z)
        if 2 * (distinct + 1) > capacity:
            capacity *= 2
            slots = np.full(capacity, -1, dtype=np.int64)
            slot_hash = np.zeros(capacity, dtype=np.uint64)
            for d in range(distinct):
                slot = np.int64(hashes[d] & np.uint64(capacity - 1))
                while slots[slot] >= 0:
                    slot = (slot + 1) & (capacity - 1)
                slots[slot] = d
                slot_hash[slot] = hashes[d]
        mask = capacity - 1
        slot = np.int64(h & np.uint64(mask))
        while True:
            d = slots[slot]
            if d < 0:
                slots[slot] = distinct
                slot_hash[slot] = h
                firsts[distinct] = i
                hashes[distinct] = h
                ids[i] = distinct
                distinct += 1
                break
            if slot_hash[slot] == h and _same(data, a, z, starts[firsts[d]], ends[firsts[d]]):
                ids[i] = d
                break
            slot = (slot + 1) & mask
    return ids, firsts[:distinct], hashes[:distinct]


@njit(cache=True, nogil=True)
def count_pairs(ids: np.ndarray, docs: np.ndarray, terms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Term frequencies: occurrences (ids, docs, docs ascending) as distinct (term, doc, tf) pairs."""
    last_doc = np.full(terms, -1, dtype=np.int64)
    slot = np.empty(terms, dtype=np.int64)
    pair_term = np.empty(len(ids), dtype=np.int64)
    pair_doc = np.empty(len(ids), dtype=np.int64)
    pair_tf = np.zeros(len(ids), dtype=np.int64)
    pairs = 0
    for i in range(len(ids)):
        t, d = ids[i], docs[i]
        if last_doc[t] != d:
            last_doc[t] = d
            slot[t] = pairs
            pair_term[pairs] = t
            pair_doc[pairs] = d
            pairs += 1
        pair_tf[slot[t]] += 1
    return pair_term[:pairs], pair_doc[:pairs], pair_tf[:pairs]


@njit(cache=True, nogil=True)
def gather_names(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, order: np.ndarray,
                 cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Terms `order[cuts[r]:cuts[r+1]]` of each row r, NUL-separated, back to back: (bytes, row offsets)."""
    size = 0
    for i in order:
        size += ends[i] - starts[i] + 1
    out = np.empty(size, dtype=np.uint8)
    offsets = np.empty(len(cuts), dtype=np.int64)
    at = 0
    for r in range(len(cuts) - 1):
        offsets[r] = at
        for k in range(cuts[r], cuts[r + 1]):
            i = order[k]
            if k > cuts[r]:
                out[at] = 0
                at += 1
            for j in range(starts[i], ends[i]):
                out[at] = data[j]
                at += 1
    offsets[len(cuts) - 1] = at
    return out[:at], offsets


@njit(cache=True, nogil=True)
def decode_rows(buffer: np.ndarray, row_at: np.ndarray, row_width: np.ndarray, row_base: np.ndarray,
                row_limit: np.ndarray, row_terms: np.ndarray, term_counts: np.ndarray,
                positions: np.ndarray, tfs: np.ndarray) -> int:
    """Every posting of many stored rows, back to back in `buffer` (row r at row_at[r], deltas of
    row_width[r] bytes then tfs), as positions (row_base + ordinal) and tfs, term after term.
    Returns -1 when a row points outside its segment (row_limit), else 0."""
    out = 0
    term = 0
    for r in range(len(row_at)):
        width = row_width[r]
        total = 0
        for t in range(term, term + row_terms[r]):
            total += term_counts[t]
        deltas_at = row_at[r]
        tfs_at = deltas_at + width * total
        j = 0
        for t in range(term, term + row_terms[r]):
            ordinal = 0
            for _ in range(term_counts[t]):
                if width == 1:
                    ordinal += buffer[deltas_at + j]
                else:
                    ordinal += np.int64(buffer[deltas_at + 2 * j]) | (np.int64(buffer[deltas_at + 2 * j + 1]) << 8)
                if ordinal >= row_limit[r]:
                    return -1
                positions[out] = row_base[r] + ordinal
                tfs[out] = buffer[tfs_at + j]
                j += 1
                out += 1
        term += row_terms[r]
    return 0
