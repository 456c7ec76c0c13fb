"""Feedback on answers, the same for every door: checked input, stored with what produced the answer,
and exported as an evaluation set in the shared/eval `queries.jsonl` format that --eval reads.

An exported line is {"id", "question", "answers": [], "doc_id"} plus what a reviewer needs: the
rating, the comment, the answer and its sources. `doc_id` is the document the answer cited (else
its first source): for a 👍 answer that is the document that answered; for a 👎 one it is what the
system chose, to be checked and corrected before the set is used as ground truth.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any

from askany.core.errors import AskAnyError
from askany.storage.feedback import FeedbackRecord

MAX_COMMENT_CHARS = 2000
MAX_TEXT_CHARS = 100_000  # a question or an answer kept with the feedback
RATINGS = {"up": 1, "down": -1, "like": 1, "dislike": -1, "1": 1, "-1": -1}


class FeedbackError(AskAnyError):
    """Feedback that cannot be stored as given (a bad rating, a comment too long or not text)."""


def rating_value(rating: object) -> int:
    """1 for 👍 (True, 1, "up", "like"), -1 for 👎 (False, -1, "down", "dislike"); else FeedbackError."""
    if isinstance(rating, bool):
        return 1 if rating else -1
    value = RATINGS.get(str(rating).strip().lower())
    if value is None:
        raise FeedbackError(f"Unknown rating {rating!r}; use up or down (👍 or 👎)")
    return value


def checked_comment(comment: str | None) -> str:
    """The comment as stored: NFC, trimmed; FeedbackError naming the problem when it cannot be."""
    text = unicodedata.normalize("NFC", comment or "").strip()
    if len(text) > MAX_COMMENT_CHARS:
        raise FeedbackError(f"The comment is {len(text)} characters long; keep it under {MAX_COMMENT_CHARS}")
    if "\x00" in text:
        raise FeedbackError("The comment holds a NUL character; remove it")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        raise FeedbackError("The comment holds broken characters (lone surrogates); retype it")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text):
        raise FeedbackError("The comment holds control characters; remove them")
    return text


def stored_text(text: str | None) -> str:
    """A question or answer as kept with feedback: no NUL, no lone surrogates, at most MAX_TEXT_CHARS."""
    cleaned = (text or "").replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return cleaned[:MAX_TEXT_CHARS]


def eval_line(record: FeedbackRecord) -> dict[str, Any] | None:
    """One queries.jsonl object for a feedback row; None when the answer had no source document."""
    cited = [s for s in record.sources if s.get("cited")] or list(record.sources)
    documents = [str(s.get("source") or "") for s in cited if s.get("source")]
    if not documents:
        return None
    return {"id": f"feedback-{record.id}", "question": record.question, "answers": [],
            "doc_id": Path(documents[0]).stem, "rating": "up" if record.rating > 0 else "down",
            "comment": record.comment, "answer": record.answer,
            "sources": list(dict.fromkeys(Path(d).name for d in documents)), "settings": record.settings,
            "created_at": record.created_at.isoformat()}


def write_eval_set(records: list[FeedbackRecord], path: Path) -> tuple[int, int]:
    """Write `records` as queries.jsonl to `path` (atomically); (lines written, rows without a source)."""
    lines = [line for line in (eval_line(r) for r in records) if line is not None]
    if path.is_dir():
        raise AskAnyError(f"{path} is a folder; give --export-feedback a file name such as feedback.jsonl")
    if not path.parent.is_dir():
        raise AskAnyError(f"The folder {path.parent} does not exist; create it or choose another file")
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    partial.replace(path)
    return len(lines), len(records) - len(lines)
