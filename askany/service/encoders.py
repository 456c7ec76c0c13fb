"""The encoder models on their own, for callers that want vectors or relevance scores rather than
answers (the HTTP API's /v1/embeddings, a LlamaIndex or LangChain user)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from askany.core.errors import ModelUnavailableError

if TYPE_CHECKING:
    from askany.context import AskAny


@dataclass
class Embeddings:
    vectors: np.ndarray  # one float32 row per text, normalized as stored vectors are
    tokens: int  # counted with the model's own tokenizer, special tokens included
    model: str
    dimension: int


def embedding_model_or_raise(app: AskAny):  # noqa: ANN201 - a SentenceTransformer
    if not app.settings.embedding_enabled:
        raise ModelUnavailableError("embedding", "The embedding model is switched off (EMBEDDING_ENABLED=false)")
    model = app.models.optional("embedding")
    if model is None:
        error = app.models.error("embedding")
        raise error if error is not None else ModelUnavailableError("embedding", "The embedding model did not load")
    return model


def embedding_dimension_of(app: AskAny) -> int:
    model = embedding_model_or_raise(app)
    return int(model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension")
               else model.get_sentence_embedding_dimension())


def embed(app: AskAny, texts: list[str]) -> Embeddings:
    """Vectors for `texts` in EMBEDDING_BATCH_SIZE batches, exactly as chunks and questions are embedded."""
    model = embedding_model_or_raise(app)
    dimension = embedding_dimension_of(app)
    if not texts:
        return Embeddings(np.zeros((0, dimension), dtype=np.float32), 0, app.settings.embedding_model, dimension)
    vectors = model.encode(texts, batch_size=app.settings.embedding_batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
    limit = getattr(model, "max_seq_length", None) or None
    ids = model.tokenizer(texts, add_special_tokens=True, truncation=limit is not None, max_length=limit)["input_ids"]
    return Embeddings(np.asarray(vectors, dtype=np.float32), sum(len(row) for row in ids),
                      app.settings.embedding_model, dimension)
