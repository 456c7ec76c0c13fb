"""The encoder models on their own, for callers that want vectors or relevance scores rather than
answers (the HTTP API's /v1/embeddings, a LlamaIndex or LangChain user)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from askany.core.errors import ModelUnavailableError

if TYPE_CHECKING:
    from askany.context import AskAny


SLICE_BATCHES = 8  # batches encoded per call


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


def embedding_dimension_of(app: AskAny, model: object | None = None) -> int:
    model = model or embedding_model_or_raise(app)
    return int(model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension")
               else model.get_sentence_embedding_dimension())


def embed(app: AskAny, texts: list[str]) -> Embeddings:
    """Vectors for `texts` in EMBEDDING_BATCH_SIZE batches, exactly as chunks and questions are embedded."""
    model = embedding_model_or_raise(app)
    dimension = embedding_dimension_of(app, model)
    if not texts:
        return Embeddings(np.zeros((0, dimension), dtype=np.float32), 0, app.settings.embedding_model, dimension)
    # One pass: the model's own outputs carry each text's attention mask, so the usage count costs no
    # second tokenization. In slices, so the token embeddings kept alongside stay small.
    size = app.settings.embedding_batch_size
    rows, tokens = [], 0
    for start in range(0, len(texts), size * SLICE_BATCHES):
        outputs = model.encode(texts[start:start + size * SLICE_BATCHES], batch_size=size,
                               normalize_embeddings=True, output_value=None, show_progress_bar=False)
        rows += [output["sentence_embedding"].float().cpu().numpy() for output in outputs]
        tokens += sum(int(output["attention_mask"].sum()) for output in outputs)
    return Embeddings(np.stack(rows).astype(np.float32, copy=False), tokens, app.settings.embedding_model,
                      dimension)
