"""Service.embed: the vectors AskAny stores and searches with, and the model's own token count."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from askany.service import Service


def _tokens(model, texts: list[str]) -> int:  # noqa: ANN001 - a SentenceTransformer
    features = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length, padding=False)
    return sum(len(ids) for ids in features["input_ids"])


def test_embed_matches_stored_vectors_and_counts_tokens(make_app, tiny_embedding_dir: Path) -> None:
    service = Service(app=make_app(embedding_model=str(tiny_embedding_dir), embedding_batch_size=2))
    texts = ["差旅报销需在出差结束后三十天内提交发票。", "", "kubectl rollout undo deployment/web", "回滚"]
    result = service.embed(texts)
    model = service.app.models.optional("embedding")
    expected = model.encode(texts, batch_size=2, normalize_embeddings=True, convert_to_numpy=True)
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (4, result.dimension)
    assert np.allclose(result.vectors, expected, atol=1e-6)
    assert result.tokens == _tokens(model, texts)  # padding is not counted, special tokens are


def test_embed_normalizes_without_a_normalize_module(make_app, tiny_embedding_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no-normalize"
    shutil.copytree(tiny_embedding_dir, folder)
    modules = [m for m in json.loads((folder / "modules.json").read_text()) if "Normalize" not in m["type"]]
    (folder / "modules.json").write_text(json.dumps(modules))
    service = Service(app=make_app(embedding_model=str(folder)))
    norms = np.linalg.norm(service.embed(["数据库备份", "发布回滚步骤"]).vectors, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5)


def test_token_counts_stay_with_their_thread(make_app, tiny_embedding_dir: Path) -> None:
    service = Service(app=make_app(embedding_model=str(tiny_embedding_dir)))
    model = service.app.models.optional("embedding")
    short, long = ["短"] * 3, ["这是一段比较长的中文文本，用来检查计数。"] * 5
    expected = {"short": _tokens(model, short), "long": _tokens(model, long)}
    counted: dict[str, list[int]] = {"short": [], "long": []}
    start = threading.Barrier(2)

    def run(name: str, texts: list[str]) -> None:
        start.wait()
        for _ in range(20):
            counted[name].append(service.embed(texts).tokens)

    threads = [threading.Thread(target=run, args=item) for item in (("short", short), ("long", long))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counted == {name: [value] * 20 for name, value in expected.items()}


def test_embed_without_a_model_says_so(make_app) -> None:
    from askany.core.errors import ModelUnavailableError

    with pytest.raises(ModelUnavailableError):
        Service(app=make_app()).embed(["x"])
