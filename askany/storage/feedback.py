"""Feedback on answers: one row per rated answer (👍 = 1, 👎 = -1), with its question, answer, sources
and the settings that produced it, so that rated questions can become an evaluation set.

Rows are only inserted or updated by id, each in its own transaction, so several processes (the
page, the HTTP server, a CLI export) can use the table at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from askany.storage.database import Database


@dataclass
class FeedbackRecord:
    id: int
    created_at: datetime
    rating: int
    comment: str
    question: str
    answer: str
    sources: list[dict[str, Any]]
    settings: dict[str, Any]


class FeedbackStore:
    def __init__(self, db: Database):
        self.db = db

    def add(self, rating: int, question: str, answer: str, sources: list[dict[str, Any]],
            settings: dict[str, Any], comment: str = "") -> int:
        with self.db.connection() as conn:
            return conn.execute(
                "INSERT INTO feedback (rating, comment, question, answer, sources, settings) "
                "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (rating, comment, question, answer, Jsonb(sources), Jsonb(settings))).fetchone()[0]

    def update(self, feedback_id: int, rating: int | None = None, comment: str | None = None) -> bool:
        """Change a row's rating and/or comment; False when there is no such row."""
        with self.db.connection() as conn:
            return conn.execute(
                "UPDATE feedback SET rating = coalesce(%s, rating), comment = coalesce(%s, comment), "
                "updated_at = now() WHERE id = %s", (rating, comment, feedback_id)).rowcount > 0

    def delete(self, feedback_id: int) -> bool:
        with self.db.connection() as conn:
            return conn.execute("DELETE FROM feedback WHERE id = %s", (feedback_id,)).rowcount > 0

    def list(self, rating: int | None = None) -> list[FeedbackRecord]:
        """All rows (or those of one rating), oldest first."""
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT id, created_at, rating, comment, question, answer, sources, settings FROM feedback "
                "WHERE %(rating)s::smallint IS NULL OR rating = %(rating)s ORDER BY id", {"rating": rating}).fetchall()
        return [FeedbackRecord(*row) for row in rows]
