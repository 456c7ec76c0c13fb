"""Notices: what a result says about itself ("vector search unavailable: ..."), with a code.

A `Notice` is a `str` (its English text, as the CLI prints it and logs show it) that also
carries a stable `code` and its `params`, so the page and the HTTP server can say it in their
own language without matching English words. `reason` is, where there is one, the underlying
error's sentence (which names the fix); translations keep it as is.
"""

from __future__ import annotations

from typing import Any

#: code -> English template. Parameters are filled with str.format; `reason` is appended by callers.
CATALOG: dict[str, str] = {
    "vector_off": "Vector search is off (EMBEDDING_ENABLED=false): keyword results only",
    "vector_unavailable": "Vector search unavailable, keyword results only: {reason}",
    "vector_mismatch": "Vector search unavailable: {reason}",
    "rerank_off": "Reranking is off (RERANKER_ENABLED=false)",
    "rerank_unavailable": "Reranking unavailable, fused order kept: {reason}",
    "keyword_rebuilt": "The keyword index was rebuilt from the stored chunks ({reason}); {count} chunks indexed",
    "llm_unavailable": "{reason}",
    "llm_off": "LLM_BACKEND=none: the answer is extracted from the passages, no LLM was used",
    "answer_cut": "The answer was cut short: {reason}",
    "stopped": "Stopped on request: the answer is what was written until then",
    "no_answer_within_tokens": "The model wrote no answer within LLM_MAX_NEW_TOKENS={max_new_tokens}{hint}",
    "context_no_room": ("The context window ({window} tokens) leaves no room for passages after "
                        "LLM_MAX_NEW_TOKENS={max_new_tokens}; raise LLM_CONTEXT_WINDOW or lower LLM_MAX_NEW_TOKENS"),
    "question_too_long": ("The question is too long for the model's context window ({window} tokens); "
                          "shorten it or raise LLM_CONTEXT_WINDOW"),
    "embedding_off": "EMBEDDING_ENABLED is off: chunks are stored without vectors",
    "no_vectors": "No vectors written: {reason}",
    "vectors_stopped": ("Vectors stopped after {written} chunks: {reason}; the chunks after them are stored "
                        "without vectors (keyword search finds them) and the next run adds them"),
}


class Notice(str):
    """English text (the str itself), plus `code` and `params` for front doors that translate."""

    code: str
    params: dict[str, Any]

    def __new__(cls, code: str, **params: Any) -> Notice:
        if code not in CATALOG:
            raise KeyError(f"unknown notice code {code!r}")
        text = CATALOG[code].format(**{key: value for key, value in params.items()})
        notice = super().__new__(cls, text)
        notice.code = code
        notice.params = {key: str(value) for key, value in params.items()}
        return notice

    def __reduce__(self) -> tuple[Any, ...]:  # pickles across worker processes with its code
        return (_rebuild, (self.code, self.params))


def _rebuild(code: str, params: dict[str, Any]) -> Notice:
    return Notice(code, **params)


def notice_code(text: str) -> str | None:
    """The code of a Notice, None for a plain string."""
    return getattr(text, "code", None)
