"""Settings: defaults, .env.example, and one clear sentence for each wrong value."""

import re
from pathlib import Path

import pytest
from dotenv import dotenv_values

from askany.cli.main import main
from askany.core.config import Settings, load_settings, setting_sources
from askany.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_lists_every_setting_with_its_default() -> None:
    example = {key.lower(): value for key, value in dotenv_values(ROOT / ".env.example").items()}
    assert set(example) == set(Settings.model_fields)
    defaults = Settings.model_construct()
    for name, text in example.items():
        default = getattr(defaults, name)
        shown = "" if default is None else str(default).lower()
        assert text.lower() == shown, f"{name}: .env.example says {text!r}, default is {default!r}"


def test_defaults_name_the_askany_models() -> None:
    settings = load_settings()
    assert settings.embedding_model == "BAAI/bge-m3"
    assert settings.reranker_model == "BAAI/bge-reranker-v2-m3"
    assert settings.llm_model == "Qwen/Qwen3-0.6B"
    assert settings.uses_embedded_database


def test_env_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "askany.env"
    env_file.write_text("TOP_K=7\nDEVICE=cpu\n", encoding="utf-8")
    monkeypatch.setenv("ASKANY_ENV_FILE", str(env_file))
    monkeypatch.setenv("DEVICE", "auto")
    settings = load_settings()
    assert settings.top_k == 7 and settings.device == "auto"  # the environment wins over the file
    sources = setting_sources(settings)
    assert sources["top_k"] == str(env_file) and sources["device"] == "environment"
    assert sources["chunk_size"] == "default"


@pytest.mark.parametrize(("variable", "value", "named"), [
    ("DEVICE", "gpu", "DEVICE"),
    ("POSTGRES_PORT", "70000", "POSTGRES_PORT"),
    ("TOP_K", "many", "TOP_K"),
    ("CHUNK_OVERLAP", "500", "CHUNK_OVERLAP"),
])
def test_wrong_value_is_one_sentence_naming_the_setting(monkeypatch: pytest.MonkeyPatch, variable: str,
                                                        value: str, named: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert named in message and "\n" not in message


@pytest.mark.parametrize(("values", "words"), [
    ({"EMBEDDING_BACKEND": "openai"}, "EMBEDDING_BACKEND=openai needs EMBEDDING_API_BASE"),
    ({"RERANKER_BACKEND": "tei"}, "RERANKER_BACKEND=tei needs RERANKER_API_BASE"),
    ({"EMBEDDING_API_BASE": "gpu-box:9100"}, "http://host:port/path"),
    ({"LLM_API_BASE": "http://gpu box/v1"}, "http://host:port/path"),
])
def test_a_remote_role_needs_a_server_address(monkeypatch: pytest.MonkeyPatch, values: dict, words: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=re.escape(words)) as caught:
        load_settings()
    assert "\n" not in str(caught.value)


def test_groups_are_larger_for_a_model_on_a_server() -> None:
    assert load_settings().vector_group_chunks == 256
    remote = {"embedding_backend": "openai", "embedding_api_base": "http://gpu-box:9100/v1/"}
    assert load_settings(**remote).vector_group_chunks == 2048
    assert load_settings(**remote, ingest_group_chunks=8).vector_group_chunks == 8
    assert load_settings(**remote).embedding_api_base == "http://gpu-box:9100/v1"  # the slash is dropped


def test_file_where_a_folder_is_needed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a_file = tmp_path / "data.txt"
    a_file.write_text("x")
    monkeypatch.setenv("DATA_DIR", str(a_file))
    with pytest.raises(ConfigError, match="DATA_DIR.*is a file, but a folder is needed"):
        load_settings()


def test_cli_reports_a_bad_setting_without_traceback(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from askany.core.config import get_settings

    get_settings.cache_clear()
    monkeypatch.setenv("DEVICE", "tpu")
    try:
        assert main(["--check"]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert err.startswith("error: Invalid setting DEVICE") and "Traceback" not in err


def test_hanlp_archive_url_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """ASKANY_HANLP_TOK_URL keeps its name, now read through Settings (so .env works for it too)."""
    monkeypatch.setenv("ASKANY_HANLP_TOK_URL", "https://mirror.example/hanlp/tok.zip")
    assert load_settings().askany_hanlp_tok_url == "https://mirror.example/hanlp/tok.zip"


def test_only_the_environment_module_reads_the_environment() -> None:
    """Settings come from the Settings class; the variables that libraries read themselves (HF_ENDPOINT,
    HF_HUB_OFFLINE, MODELSCOPE_DOMAIN, HANLP_URL, ...) go through askany.core.environment alone."""
    package = ROOT / "askany"
    readers = sorted(path.relative_to(package).as_posix() for folder in ("core", "models")
                     for path in (package / folder).rglob("*.py")
                     if re.search(r"os\.environ|getenv", path.read_text(encoding="utf-8")))
    assert readers == ["core/environment.py"]
