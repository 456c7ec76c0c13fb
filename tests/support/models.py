"""Fixtures: tiny local models built once per session with the real save/load code (tiny_models.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import tiny_models


@pytest.fixture(scope="session")
def tiny_embedding_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bge-m3-shaped sentence-transformers folder with tiny random weights."""
    return tiny_models.build_embedding_model(tmp_path_factory.mktemp("tiny-embedding"))


@pytest.fixture(scope="session")
def tiny_reranker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bge-reranker-v2-m3-shaped cross encoder folder with tiny random weights."""
    return tiny_models.build_reranker_model(tmp_path_factory.mktemp("tiny-reranker"))


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Qwen3ForCausalLM folder with a Qwen-style tokenizer and chat template."""
    return tiny_models.build_qwen3_model(tmp_path_factory.mktemp("tiny-llm"))


@pytest.fixture(scope="session")
def tiny_hanlp_dir(tmp_path_factory: pytest.TempPathFactory, tiny_embedding_dir: Path) -> Path:
    """A HanLP TransformerTaggingTokenizer trained on the tiny encoder; load with hanlp.load."""
    return tiny_models.build_hanlp_tokenizer(tmp_path_factory.mktemp("tiny-hanlp"), tiny_embedding_dir)
