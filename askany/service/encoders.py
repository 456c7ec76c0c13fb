"""The encoder models on their own, for callers that want vectors or relevance scores rather than
answers (the HTTP API's /v1/embeddings, a LlamaIndex or LangChain user)."""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from askany.core.errors import ModelUnavailableError
from askany.core.tally import ThreadTally
from askany.models.loaders import embedding_dimension

if TYPE_CHECKING:
    import torch

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


def embedding_dimension_of(app: AskAny, model: object | None = None) -> int:
    return embedding_dimension(model or embedding_model_or_raise(app))


def embed(app: AskAny, texts: list[str]) -> Embeddings:
    """Vectors for `texts` in EMBEDDING_BATCH_SIZE batches, exactly as chunks and questions are embedded."""
    model = embedding_model_or_raise(app)
    dimension = embedding_dimension_of(app, model)
    if not texts:
        return Embeddings(np.zeros((0, dimension), dtype=np.float32), 0, app.settings.embedding_model_name, dimension)
    # A server's client counts what the server reports (usage); a local model, what it encodes.
    counter = model if hasattr(model, "counting") else TokenCounter.of(model)
    with counter.counting() as counted:
        vectors = model.encode(texts, batch_size=app.settings.embedding_batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
    return Embeddings(vectors.astype(np.float32, copy=False), counted(), app.settings.embedding_model_name, dimension)


class TokenCounter:
    """The tokens a sentence-transformers model really encodes, read from the attention masks that
    enter its first module, so usage needs no second tokenization. (encode(output_value=None) also
    carries the masks, but splits every output per text, which cost 5 ms a request at 256 texts, and
    skips normalize_embeddings.) Counts are per thread: a page upload can encode at the same time."""

    _counters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    def __init__(self, model: torch.nn.Module):
        self._tally = ThreadTally()
        model[0].register_forward_pre_hook(self._seen)

    @classmethod
    def of(cls, model: torch.nn.Module) -> TokenCounter:
        with cls._lock:
            if model not in cls._counters:
                cls._counters[model] = cls(model)
            return cls._counters[model]

    def _seen(self, _module: object, args: tuple) -> None:
        if not self._tally.active or not args or not isinstance(args[0], Mapping):
            return
        features = args[0]
        mask = features.get("attention_mask")
        ids = features.get("input_ids")
        self._tally.add(int(mask.sum()) if mask is not None else int(ids.numel()) if ids is not None else 0)

    def counting(self) -> contextlib.AbstractContextManager[Callable[[], int]]:
        """Count this thread's tokens inside the block; the yielded function gives the total."""
        return self._tally.counting()
