"""Shared test setup: an offline environment and tiny local models.

The environment variables are set before anything imports huggingface_hub,
transformers or gradio, since those read them at import time.
"""

import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

import pytest  # noqa: E402
import tiny_models  # noqa: E402


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


from fixtures import *  # noqa: E402,F401,F403  (network guard, database and app fixtures)
