"""Cross-encoder scores for (question, passage) pairs: the last ranking stage, also offered on its own
(the LlamaIndex node postprocessor, the HTTP rerank endpoint)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from askany.core.errors import ModelUnavailableError

if TYPE_CHECKING:
    from askany.context import AskAny


def reranker_problem(app: AskAny) -> str | None:
    """Why the reranker cannot be used ("off" when switched off by the settings), or None when it can."""
    if not app.settings.reranker_enabled:
        return "off"
    if app.models.optional("reranker") is None:
        return app.models.error("reranker") or "the reranker did not load"
    return None


def rerank_scores(app: AskAny, query: str, texts: Sequence[str]) -> list[float]:
    """One relevance score per text (higher is better); raises ModelUnavailableError when no reranker."""
    if not texts:
        return []
    problem = reranker_problem(app)
    if problem is not None:
        raise ModelUnavailableError("reranker", "The reranker is switched off (RERANKER_ENABLED=false)" if problem == "off"
                                    else f"The reranker is not available: {problem}")
    model = app.models.optional("reranker")
    scores = model.predict([(query, text) for text in texts], batch_size=app.settings.rerank_batch_size,
                           show_progress_bar=False, convert_to_numpy=True)
    return [float(score) for score in scores]
