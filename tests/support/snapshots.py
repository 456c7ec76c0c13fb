"""What a knowledge base holds, table by table, in a form two runs can be compared in (used by the
interruption tests and bench/faults.py)."""

from __future__ import annotations

from typing import Any


def snapshot(app: Any, kb: str) -> dict:
    """Everything a query can see of a knowledge base, independent of serial ids."""
    with app.db.connection() as conn:
        docs = conn.execute("SELECT source, content_hash, chunk_count FROM documents WHERE kb = %s ORDER BY source",
                            (kb,)).fetchall()
        chunks = conn.execute("SELECT node_id, text, term_count FROM chunks WHERE kb = %s ORDER BY node_id",
                              (kb,)).fetchall()
        node_ids = dict(conn.execute("SELECT id, node_id FROM chunks WHERE kb = %s", (kb,)).fetchall())
        vectors = conn.execute("SELECT count(*) FROM chunk_vectors v JOIN chunks c ON c.id = v.chunk_id "
                               "WHERE c.kb = %s", (kb,)).fetchone()[0] if app.store.vector_model() else 0
    # The keyword index as a query sees it: each live chunk's length and term frequencies
    # (node ids include the kb name, so they are left out to compare two knowledge bases).
    terms = sorted((length, sorted(tfs.items()))
                   for chunk_id, (length, tfs) in app.store.keywords.dump().items() if chunk_id in node_ids)
    return {"documents": docs, "chunks": chunks, "terms": terms, "vectors": vectors}


def differences(expected: dict, actual: dict) -> list[str]:
    """The tables in which two snapshots of different knowledge bases differ (node ids left out)."""
    found = []
    for table in ("documents", "terms", "vectors"):
        if expected[table] != actual[table]:
            found.append(table)
    if sorted(row[1:] for row in expected["chunks"]) != sorted(row[1:] for row in actual["chunks"]):
        found.append("chunks")
    return found
