"""Knowledge-base names: the one rule every door applies when a name is created or ingested into.

A name is what a user sees in lists, types after ``--kb`` and picks on the page, and it names the
kb's upload folder (``service/uploads.kb_folder_name``), so it must read as itself: no controls,
no invisible or direction-changing characters, no path separators, not too long.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from askany.core.errors import AskAnyError

MAX_KB_NAME_CHARS = 64
# Controls (NUL included), format characters (zero-width, bidi overrides), surrogates, private use,
# unassigned, and line/paragraph separators.
_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_SEPARATORS = set("/\\")


class KnowledgeBaseError(AskAnyError):
    """A knowledge base cannot be created, ingested into or deleted; `code` names why, for translation."""

    def __init__(self, code: str, message: str, kb: str = ""):
        super().__init__(message)
        self.code, self.kb = code, kb


def check_kb_name(name: str | None) -> str:
    """The name, stripped, or KnowledgeBaseError (one sentence naming the fix) when it breaks the rule."""
    text = (name or "").strip()
    if not text:
        raise KnowledgeBaseError("name_empty", "The knowledge base name is empty; give a name (--kb NAME)")
    if len(text) > MAX_KB_NAME_CHARS:
        raise KnowledgeBaseError("name_too_long", f"The knowledge base name is {len(text)} characters long; "
                                 f"use at most {MAX_KB_NAME_CHARS}")
    if any(unicodedata.category(ch) in _INVISIBLE for ch in text):
        raise KnowledgeBaseError("name_invisible", f"The knowledge base name {text!r} holds control or invisible "
                                 "characters; type it again with visible characters only")
    # NFKC, so full-width ／ and ＼ count as the separators they look like.
    if any(ch in _SEPARATORS for ch in unicodedata.normalize("NFKC", text)) or text in (".", ".."):
        raise KnowledgeBaseError("name_separator", f"The knowledge base name {text!r} holds a path separator "
                                 "(/ or \\) or is . or ..; choose a name without them")
    return text


@dataclass
class KbDeleteResult:
    kb: str
    deleted: bool  # it existed (documents, or created empty)
    documents: int = 0
    chunks: int = 0
    uploads_removed: int = 0
    sources: list[str] = field(default_factory=list)
