"""The composition root: settings, models, database, store and keyword analyzer, each made once, lazily."""

from __future__ import annotations

import threading
from functools import cached_property

from askany.core.config import Settings, get_settings
from askany.ingestion.keywords import KeywordAnalyzer, make_segmenter
from askany.models.registry import ModelRegistry, shared_registry
from askany.storage.database import Database, open_database
from askany.storage.store import ChunkStore


class AskAny:
    """Everything a command or the web page needs; nothing starts until it is first used."""

    def __init__(self, settings: Settings | None = None, models: ModelRegistry | None = None):
        self.settings = settings or get_settings()
        self.models = models or shared_registry(self.settings)
        self._analyzer_lock = threading.Lock()
        self._analyzer: KeywordAnalyzer | None = None

    @cached_property
    def db(self) -> Database:
        return open_database(self.settings)

    @cached_property
    def store(self) -> ChunkStore:
        return ChunkStore(self.db, analyze=lambda texts: self.analyzer.bags(texts),
                          k1=self.settings.bm25_k1, b=self.settings.bm25_b,
                          keyword_cache_mb=self.settings.keyword_cache_mb)

    @property
    def analyzer(self) -> KeywordAnalyzer:
        with self._analyzer_lock:
            if self._analyzer is None:
                hanlp = self.models.optional("hanlp") if self.settings.hanlp_tok_model else None
                self._analyzer = KeywordAnalyzer(make_segmenter(self.settings, hanlp))
            return self._analyzer

    def embedding_model(self):  # noqa: ANN201 - a SentenceTransformer or None
        """The embedding model, or None when it is disabled or unavailable."""
        return self.models.optional("embedding") if self.settings.embedding_enabled else None
