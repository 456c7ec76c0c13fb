"""EMBEDDING_RUNTIME / RERANKER_RUNTIME and LLM_DTYPE (tiny local models): bf16 where the CPU computes it,
ONNX exported once into the cache beside the folder and reused, the check against torch, and torch
kept with a notice on any failure."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from askany.core.errors import ConfigError
from askany.models import precision, runtime
from askany.models.registry import load_embedding, load_reranker, role_status
from askany.models.roles import EMBEDDING, RERANKER
from askany.service import Service

TEXTS = ["员工每年可以享受十五天带薪年假。", "数据库每天凌晨两点自动备份。", "kubectl rollout undo deployment/web"]


@pytest.fixture
def embedding_copy(tiny_embedding_dir: Path, tmp_path: Path) -> Path:
    """A folder of its own, so its export cache (beside it) belongs to this test alone."""
    return Path(shutil.copytree(tiny_embedding_dir, tmp_path / "models" / "tiny-embedding"))


@pytest.fixture
def reranker_copy(tiny_reranker_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_reranker_dir, tmp_path / "models" / "tiny-reranker"))


def exports(folder: Path) -> list[str]:
    cache = folder.parent / runtime.CACHE_DIR
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) if cache.is_dir() else []


def test_onnx_export_is_made_once_reused_and_agrees_with_torch(make_app, make_settings, embedding_copy: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    service = Service(app=make_app(embedding_model=str(embedding_copy), embedding_runtime="onnx"))
    settings = service.settings
    before = service.status(db_probe=False)["models"]["embedding"]["runtime"]
    assert before["runtime"] == "onnx" and before["detail"] == "exported on first load"

    model = service.app.models.embedding()  # the first load exports
    assert model.askany_runtime.runtime == "onnx" and "exported 20" in str(model.askany_runtime)
    features = model.tokenizer(TEXTS, truncation=True, max_length=model.max_seq_length, padding=False)
    assert service.embed(TEXTS).tokens == sum(len(ids) for ids in features["input_ids"])  # still counted
    status = service.status(db_probe=False)["models"]
    assert status["embedding"]["runtime"]["summary"] == str(model.askany_runtime)
    assert status["embedding"]["runtime"]["path"].endswith("model.onnx") and status["llm"]["runtime"] is None
    from askany.web.render import render_status

    assert f"runtime {model.askany_runtime}" in render_status(service.status(db_probe=False), {}, "en")
    [entry] = exports(embedding_copy)
    assert entry.startswith("tiny-embedding-onnx-") and not any(p.name.startswith(".partial")
                                                               for p in (embedding_copy.parent / ".askany-onnx").iterdir())
    torch_model = load_embedding(make_settings(embedding_model=str(embedding_copy), embedding_runtime="torch"))
    assert torch_model.askany_runtime.runtime == "torch"
    onnx_vectors = model.encode(TEXTS, normalize_embeddings=True)
    torch_vectors = torch_model.encode(TEXTS, normalize_embeddings=True)
    assert onnx_vectors.shape == torch_vectors.shape
    assert np.allclose(onnx_vectors, torch_vectors, atol=1e-4)

    def no_export(*_args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(runtime, "_torch_export", no_export)
    again = load_embedding(settings)  # a new process would do the same: the cache is on disk
    assert again.askany_runtime.runtime == "onnx" and exports(embedding_copy) == [entry]
    assert np.allclose(again.encode(TEXTS, normalize_embeddings=True), onnx_vectors, atol=1e-6)
    shown = role_status(settings, "embedding").runtime
    assert shown["runtime"] == "onnx" and shown["summary"].startswith("onnx (exported 20")

    # int8 quantizes the cached fp32 export (no second export); random tiny weights quantize badly,
    # so the check is relaxed here: what it guards is tested below
    monkeypatch.setitem(runtime.MIN_COSINE, "onnx-int8", 0.0)
    monkeypatch.setitem(runtime.MIN_MEAN_COSINE, "onnx-int8", 0.0)
    int8 = load_embedding(make_settings(embedding_model=str(embedding_copy), embedding_runtime="onnx-int8"))
    assert int8.askany_runtime.runtime == "onnx-int8" and len(exports(embedding_copy)) == 2
    assert int8.encode(TEXTS, normalize_embeddings=True).shape == onnx_vectors.shape

    (embedding_copy / "README.md").write_text("changed", encoding="utf-8")  # a changed folder: a new key
    assert role_status(settings, "embedding").runtime["detail"] == "exported on first load"


def test_a_failed_check_keeps_torch_with_a_notice_and_is_not_retried(make_settings, reranker_copy: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(runtime.MAX_SCORE_GAP, "onnx", -1.0)  # no export can agree
    settings = make_settings(reranker_model=str(reranker_copy), reranker_runtime="onnx")
    model = load_reranker(settings)
    state = model.askany_runtime
    assert state.runtime == "torch" and state.fallback
    assert str(state).startswith("torch (onnx export failed: the onnx model disagrees with torch")
    assert any("stays on torch" in r.message and "RERANKER_RUNTIME" in r.message for r in caplog.records)
    assert model.predict([("年假", TEXTS[0])]).shape == (1,)  # the torch model still answers
    assert type(model[0].model).__name__.endswith("ForSequenceClassification")

    monkeypatch.setattr(runtime, "_torch_export", lambda *_: pytest.fail("retried a recorded failure"))
    assert load_reranker(settings).askany_runtime.runtime == "torch"
    shown = role_status(settings, "reranker").runtime
    assert shown["runtime"] == "torch" and "onnx export failed" in shown["summary"]


def test_missing_packages_keep_torch_with_a_notice(make_settings, embedding_copy: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "missing_packages", lambda: ["onnxscript"])
    monkeypatch.setattr(precision, "cpu_bf16", lambda: None)  # else auto is torch-bf16
    explicit = load_embedding(make_settings(embedding_model=str(embedding_copy), embedding_runtime="onnx-int8"))
    assert str(explicit.askany_runtime) == ("torch (onnx-int8 export failed: it needs the packages onnxscript "
                                            "(pip install onnxscript))")
    auto = make_settings(embedding_model=str(embedding_copy), embedding_runtime="auto")
    assert load_embedding(auto).askany_runtime.runtime == "torch"
    assert "needs onnxscript" in role_status(auto, "embedding").runtime["detail"]
    assert exports(embedding_copy) == []


def test_auto_follows_the_cpus_bf16_kind_and_is_torch_on_a_gpu(make_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(embedding_runtime="auto", reranker_runtime="torch")
    int8_or_torch = "onnx-int8" if not runtime.missing_packages() else "torch"
    monkeypatch.setattr(precision, "cpu_bf16", lambda: "amx")
    assert runtime.wanted_runtime(settings, EMBEDDING, "cpu") == ("torch-bf16", precision.AUTO_BF16_NOTES["amx"])
    monkeypatch.setattr(precision, "cpu_bf16", lambda: "avx512")  # int8 measured faster than bf16 there
    assert runtime.wanted_runtime(settings, EMBEDDING, "cpu")[0] == int8_or_torch.replace("torch", "torch-bf16")
    monkeypatch.setattr(precision, "cpu_bf16", lambda: None)
    assert runtime.wanted_runtime(settings, EMBEDDING, "cpu")[0] == int8_or_torch
    assert runtime.wanted_runtime(settings, EMBEDDING, "cuda") == ("torch", "auto on cuda")
    assert runtime.wanted_runtime(settings, RERANKER, "cpu") == ("torch", "")
    explicit = make_settings(embedding_runtime="torch-bf16")
    assert runtime.wanted_runtime(explicit, EMBEDDING, "cpu") == ("torch-bf16", precision.NO_BF16_NOTE)


def test_without_onnx_auto_is_torch_bf16_where_the_cpu_has_bf16(make_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(embedding_runtime="auto")
    monkeypatch.setattr(runtime, "missing_packages", lambda: ["onnxruntime"])
    monkeypatch.setattr(precision, "cpu_bf16", lambda: "avx512")
    chosen, note = runtime.wanted_runtime(settings, EMBEDDING, "cpu")
    assert chosen == "torch-bf16" and note.startswith(precision.AUTO_BF16_NOTES["avx512"]) and "onnxruntime" in note
    monkeypatch.setattr(precision, "cpu_bf16", lambda: None)
    assert runtime.wanted_runtime(settings, EMBEDDING, "cpu")[0] == "torch"


def test_the_bf16_kind_comes_from_the_cpu_flags() -> None:
    assert precision.bf16_kind({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}) == "amx"
    assert precision.bf16_kind({"avx2", "avx512f", "avx512_bf16"}) == "avx512"
    assert precision.bf16_kind({"sse2", "avx2", "avx512f"}) is None
    assert precision.cpu_bf16() in ("amx", "avx512", None)  # this machine's, read without failing


def test_torch_bf16_halves_the_weights_and_keeps_float32_results_close_to_fp32(
        make_settings, embedding_copy: Path, reranker_copy: Path) -> None:
    import torch

    def both(role: str, load: object, call: object) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for name in ("torch", "torch-bf16"):
            model = load(make_settings(**{f"{role}_model": str(embedding_copy if role == "embedding" else reranker_copy),
                                          f"{role}_runtime": name}))
            assert str(model.askany_runtime).startswith(name)
            assert next(model.parameters() if role == "embedding" else model.model.parameters()).dtype == (
                torch.bfloat16 if name == "torch-bf16" else torch.float32)
            out.append(call(model))
        return out[0], out[1]

    # The tiny models (hidden size 32, random weights) are far more sensitive to bf16 rounding than
    # real ones (all-MiniLM-L6-v2: mean cosine 1.000, bench/encoders.py), hence the loose bounds.
    fp32, bf16 = both("embedding", load_embedding,
                      lambda model: model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True))
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    cosine = np.sum(fp32 * bf16, axis=1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(bf16, axis=1))
    assert float(cosine.mean()) > 0.95 and float(cosine.min()) > 0.85
    pairs = [("年假有多少天？", text) for text in TEXTS]
    fp32, bf16 = both("reranker", load_reranker, lambda model: model.predict(pairs, show_progress_bar=False))
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    assert float(np.max(np.abs(fp32 - bf16))) < 0.1 * (float(np.ptp(fp32)) + 1)
    assert exports(embedding_copy) == [] and exports(reranker_copy) == []  # nothing exported


def test_a_failed_bf16_cast_keeps_fp32_with_a_notice(make_settings, embedding_copy: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    def refuse(model: object, setting: str, note: str) -> object:
        raise RuntimeError("bf16 is not supported on this device")

    monkeypatch.setattr(runtime, "_use_bf16", refuse)
    model = load_embedding(make_settings(embedding_model=str(embedding_copy), embedding_runtime="torch-bf16"))
    assert str(model.askany_runtime) == "torch (torch-bf16 failed: bf16 is not supported on this device)"
    assert model.askany_runtime.fallback and next(model.parameters()).dtype == torch.float32
    assert model.encode(TEXTS, convert_to_numpy=True).shape[0] == len(TEXTS)


def test_llm_dtype_follows_the_setting_and_auto_follows_the_cpu(make_settings, tiny_llm_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from askany.models.loaders import choose_dtype
    from askany.models.registry import load_llm

    monkeypatch.setattr(precision, "cpu_bf16", lambda: "avx512")
    assert choose_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(precision, "cpu_bf16", lambda: "amx")
    assert choose_dtype("cpu", "float32") == torch.float32
    settings = make_settings(llm_model=str(tiny_llm_dir), llm_backend="transformers", llm_dtype="auto")
    assert next(load_llm(settings).model.parameters()).dtype == torch.bfloat16
    assert role_status(settings, "llm").runtime["summary"] == f"bfloat16 ({precision.AUTO_BF16_NOTES['amx']})"
    monkeypatch.setattr(precision, "cpu_bf16", lambda: None)
    assert choose_dtype("cpu") == torch.float32
    assert choose_dtype("cpu", "bfloat16") == torch.bfloat16
    assert precision.llm_dtype("bfloat16", "cpu")[1] == precision.NO_BF16_NOTE
    assert choose_dtype("mps") == torch.float16


def test_a_wrong_runtime_is_one_sentence(make_settings) -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(reranker_runtime="tensorrt")
    message = str(caught.value)
    assert message.startswith("Invalid setting RERANKER_RUNTIME (got 'tensorrt'):")
    assert "'auto', 'torch', 'torch-bf16', 'onnx' or 'onnx-int8'" in message
