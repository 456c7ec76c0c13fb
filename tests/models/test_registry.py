"""Offline model loading for every role through the real loaders, and every error path."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import pytest

from askany.core.errors import ModelUnavailableError
from askany.ingestion.keywords import HanLPSegmenter, JiebaSegmenter, KeywordAnalyzer, make_segmenter
from askany.models.registry import (
    ModelRegistry,
    check_model_folder,
    choose_device,
    resolve_model,
    role_status,
)


def copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_local_folders_load_for_every_role(make_settings, tiny_embedding_dir, tiny_reranker_dir,
                                           tiny_llm_dir) -> None:
    settings = make_settings(embedding_model=str(tiny_embedding_dir), reranker_model=str(tiny_reranker_dir),
                             llm_model=str(tiny_llm_dir))
    registry = ModelRegistry(settings)
    vectors = registry.embedding().encode(["重启服务", "数据库备份"], normalize_embeddings=True)
    assert vectors.shape[0] == 2 and abs(float((vectors[0] ** 2).sum()) - 1) < 1e-4
    assert abs(float(vectors[0] @ vectors[1])) < 0.9999  # different texts, different vectors
    assert len(registry.reranker().predict([("问题", "答案"), ("问题", "无关")])) == 2
    llm = registry.llm()
    assert llm.device == "cpu" and llm.tokenizer("你好")["input_ids"]
    assert resolve_model(settings, "embedding").source == "local folder"


def test_models_load_once_and_are_shared(make_settings, tiny_embedding_dir) -> None:
    registry = ModelRegistry(make_settings(embedding_model=str(tiny_embedding_dir)))
    assert registry.embedding() is registry.embedding()


def test_hub_id_found_in_models_dir(make_settings, tiny_embedding_dir, tmp_path) -> None:
    copy_model(tiny_embedding_dir, tmp_path / "models" / "bge-m3")
    settings = make_settings(embedding_model="BAAI/bge-m3")
    resolved = resolve_model(settings, "embedding")
    assert resolved.source == "models dir" and resolved.path == tmp_path / "models" / "bge-m3"
    assert ModelRegistry(settings).embedding() is not None


@pytest.mark.parametrize(("remove", "named"), [
    ("config.json", "config.json"),
    ("model.safetensors", "model.safetensors"),
    ("tokenizer.json", "tokenizer files"),
    ("modules.json", "modules.json"),
])
def test_missing_file_is_named_with_the_fix(make_settings, tiny_embedding_dir, tmp_path, remove, named) -> None:
    folder = copy_model(tiny_embedding_dir, tmp_path / "broken")
    for name in [remove] + (["vocab.txt", "sentencepiece.bpe.model"] if remove == "tokenizer.json" else []):
        (folder / name).unlink(missing_ok=True)
    registry = ModelRegistry(make_settings(embedding_model=str(folder)))
    with pytest.raises(ModelUnavailableError) as caught:
        registry.embedding()
    message = str(caught.value)
    assert named in message and str(folder) in message and "--download-models embedding" in message
    assert registry.optional("embedding") is None  # the failure is remembered, not retried


def test_wrong_kind_of_folder(make_settings, tiny_llm_dir, tiny_embedding_dir) -> None:
    with pytest.raises(ModelUnavailableError, match="not a sentence embedding model"):
        ModelRegistry(make_settings(embedding_model=str(tiny_llm_dir))).embedding()
    with pytest.raises(ModelUnavailableError, match="not a sequence-classification cross encoder"):
        check_model_folder("reranker", tiny_llm_dir)
    with pytest.raises(ModelUnavailableError, match="missing"):
        check_model_folder("llm", tiny_embedding_dir / "1_Pooling")


def test_corrupted_config(make_settings, tiny_reranker_dir, tmp_path) -> None:
    folder = copy_model(tiny_reranker_dir, tmp_path / "corrupt")
    (folder / "config.json").write_text("{ not json", encoding="utf-8")
    with pytest.raises(ModelUnavailableError, match="config.json is corrupted"):
        ModelRegistry(make_settings(reranker_model=str(folder))).reranker()


def test_corrupted_weights_are_one_sentence(make_settings, tiny_embedding_dir, tmp_path) -> None:
    folder = copy_model(tiny_embedding_dir, tmp_path / "bad-weights")
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelUnavailableError, match="could not be loaded"):
        ModelRegistry(make_settings(embedding_model=str(folder))).embedding()


def test_hub_id_offline_with_empty_cache_fails_fast(make_settings, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    settings = make_settings(embedding_model="BAAI/bge-m3", llm_model="Qwen/Qwen3-0.6B")
    started = time.perf_counter()
    for role in ("embedding", "llm"):
        with pytest.raises(ModelUnavailableError) as caught:
            ModelRegistry(settings).get(role)
        assert "offline mode is on" in str(caught.value)
        assert f"python -m askany.main --download-models {role}" in str(caught.value)
    assert time.perf_counter() - started < 5


def test_role_local_files_only_flag(make_settings, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    settings = make_settings(reranker_model="BAAI/bge-reranker-v2-m3", reranker_local_files_only=True)
    with pytest.raises(ModelUnavailableError, match="RERANKER_LOCAL_FILES_ONLY is set"):
        resolve_model(settings, "reranker")


def test_check_names_the_real_reason_a_model_is_not_fetched(make_settings, tmp_path, monkeypatch) -> None:
    """--check never downloads, and must not blame *_LOCAL_FILES_ONLY when it is not set: it names the real reason."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    settings = make_settings(embedding_model="BAAI/bge-m3")
    state = role_status(settings, "embedding")
    assert not state.ok and not state.offline and state.required
    assert "LOCAL_FILES_ONLY" not in state.problem and "offline mode" not in state.problem
    assert "--download-models embedding" in state.problem
    problem = role_status(make_settings(embedding_model="BAAI/bge-m3", embedding_local_files_only=True),
                          "embedding").problem
    assert "EMBEDDING_LOCAL_FILES_ONLY is set" in problem
    problem = role_status(make_settings(embedding_model="BAAI/bge-m3", hf_hub_offline=True), "embedding").problem
    assert "offline mode is on (HF_HUB_OFFLINE=true in the settings)" in problem
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    problem = role_status(settings, "embedding").problem
    assert "offline mode is on (TRANSFORMERS_OFFLINE set in the environment)" in problem


def test_role_table_names_real_settings(make_settings) -> None:
    """One table says each role's settings and when it is needed; every name in it is a real setting."""
    from askany.core.config import Settings
    from askany.models.roles import ROLE_TABLE, ROLES, get_role, required_roles

    assert ROLES == ("embedding", "reranker", "llm", "hanlp")
    for role in ROLE_TABLE:
        assert role.setting.lower() in Settings.model_fields
        assert role.local_only_setting is None or role.local_only_setting.lower() in Settings.model_fields
        assert get_role(role.name) is role and get_role(role) is role
    assert required_roles(make_settings(llm_backend="transformers")) == ["embedding", "reranker", "llm"]
    assert required_roles(make_settings(reranker_enabled=False, hanlp_tok_model="tok")) == ["embedding", "hanlp"]
    hanlp = role_status(make_settings(), "hanlp")
    assert not hanlp.required and hanlp.offline


def test_unreachable_hub_fails_within_seconds(make_settings, tmp_path, monkeypatch) -> None:
    """Online mode with a hub that does not answer: a clear sentence, not a hang."""
    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    settings = make_settings(embedding_model="BAAI/bge-m3", hub_timeout_seconds=2)
    started = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as caught:
        ModelRegistry(settings).embedding()
    assert time.perf_counter() - started < 10
    assert f"127.0.0.1:{port} could not be reached" in str(caught.value)


def test_role_status_never_downloads(make_settings, tiny_embedding_dir) -> None:
    settings = make_settings(embedding_model=str(tiny_embedding_dir))
    assert role_status(settings, "embedding").ok
    missing = role_status(settings, "reranker")
    assert not missing.ok and "RERANKER_MODEL" in missing.problem
    assert role_status(settings, "hanlp").problem.startswith("not configured")


def test_device_choice(make_settings) -> None:
    assert choose_device(make_settings(device="auto")) == "cpu"
    assert choose_device(make_settings(device="cpu")) == "cpu"
    with pytest.raises(ModelUnavailableError, match="DEVICE=cuda but no CUDA GPU"):
        choose_device(make_settings(device="cuda"))


def test_hanlp_loads_from_local_folder_with_user_dict(make_settings, tiny_hanlp_dir, tmp_path) -> None:
    user_dict = tmp_path / "dict.txt"
    user_dict.write_text("天安门广场 10 ns\n", encoding="utf-8")
    settings = make_settings(hanlp_tok_model=str(tiny_hanlp_dir), user_dict=str(user_dict))
    component = ModelRegistry(settings).get("hanlp")
    segmenter = make_segmenter(settings, component)
    assert isinstance(segmenter, HanLPSegmenter)
    words = segmenter.segment(["我爱天安门广场", ""])
    assert "天安门广场" in words[0] and words[1] == []
    assert KeywordAnalyzer(segmenter).terms("天安门广场")


def test_hanlp_failure_falls_back_to_jieba(make_settings, tmp_path, caplog) -> None:
    settings = make_settings(hanlp_tok_model=str(tmp_path / "not-there"))
    registry = ModelRegistry(settings)
    assert registry.optional("hanlp") is None
    assert "HANLP_TOK_MODEL" in str(registry.error("hanlp"))
    segmenter = make_segmenter(settings, None)
    assert segmenter.name == "jieba" and segmenter.segment(["数据库备份"]) == JiebaSegmenter().segment(["数据库备份"])
    assert "falling back to jieba" in caplog.text


def test_hanlp_folder_of_wrong_kind(tiny_embedding_dir) -> None:
    with pytest.raises(ModelUnavailableError, match="not a HanLP model folder"):
        check_model_folder("hanlp", tiny_embedding_dir)


def test_jieba_user_dictionary(make_settings, tmp_path) -> None:
    user_dict = tmp_path / "dict.txt"
    user_dict.write_text("配置中心服务 100 n\n", encoding="utf-8")
    segmenter = make_segmenter(make_settings(user_dict=str(user_dict)))
    assert "配置中心服务" in segmenter.segment(["请检查配置中心服务是否健康"])[0]


def test_corrupt_modules_json_is_reported(make_settings, tiny_embedding_dir, tmp_path) -> None:
    folder = copy_model(tiny_embedding_dir, tmp_path / "bad-modules")
    (folder / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "",
                                                      "type": "no.such.Module"}]))
    with pytest.raises(ModelUnavailableError, match="could not be loaded"):
        ModelRegistry(make_settings(embedding_model=str(folder))).embedding()


def test_the_network_guard_catches_outside_connections(loopback_only) -> None:
    """Every test runs under this guard, so a passing suite proves nothing left the machine."""
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="not loopback"):
        sock.connect(("203.0.113.7", 443))
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("huggingface.co", 443)
    assert loopback_only == [("203.0.113.7", 443), "huggingface.co"]
    loopback_only.clear()  # caught on purpose here


def test_loading_every_role_offline_touches_no_network(make_settings, tiny_embedding_dir, tiny_reranker_dir,
                                                       tiny_llm_dir, tiny_hanlp_dir, loopback_only) -> None:
    settings = make_settings(embedding_model=str(tiny_embedding_dir), reranker_model=str(tiny_reranker_dir),
                             llm_model=str(tiny_llm_dir), hanlp_tok_model=str(tiny_hanlp_dir))
    registry = ModelRegistry(settings)
    for role in ("embedding", "reranker", "llm", "hanlp", "embedding_tokenizer"):
        assert registry.get(role) is not None
    assert loopback_only == []
