"""Model management against a stand-in hub on 127.0.0.1: download, resume, verify, import, export.

The stand-in (`fake_hub.FakeHub`) answers the requests huggingface_hub makes for a
snapshot download and serves HanLP archives, so the real download code runs end
to end; the downloaded folders are then loaded offline by `askany.models.registry`.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import io
import json
import os
import socket
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants as hub_constants
import pytest

from askany.cli import model_commands
from askany.core.config import Settings, get_settings, load_settings
from askany.models import manager as mm
from askany.models import registry as models
from askany.models import retry as model_retry
from tests.support.fake_hub import FakeHub

TOK_ZIP = "coarse_electra_small_20220616_012050.zip"
ELECTRA_ZIP = "electra_zh_small_20210706_125427.zip"
ELECTRA = "hfl/chinese-electra-180g-small-discriminator"
REPOS = {"embedding": "BAAI/bge-m3", "reranker": "BAAI/bge-reranker-v2-m3", "llm": "Qwen/Qwen3-0.6B"}


# ---------------------------------------------------------------------------- fixtures

def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def hanlp_zip(tiny_hanlp_dir: Path, root: str, transformer: str) -> bytes:
    """The tiny tokenizer packed the way HanLP publishes it: its transformer named, not included."""
    config = json.loads((tiny_hanlp_dir / "config.json").read_text(encoding="utf-8"))
    config["transformer"] = transformer
    files = {f"{root}/{p.relative_to(tiny_hanlp_dir).as_posix()}": p.read_bytes()
             for p in sorted(tiny_hanlp_dir.rglob("*")) if p.is_file() and "transformer" not in p.parts}
    files[f"{root}/config.json"] = json.dumps(config).encode()
    return _zip(files)


@pytest.fixture(scope="module")
def hanlp_archives(tiny_hanlp_dir: Path) -> dict[str, bytes]:
    """HanLP's two archives: the tokenizer naming its transformer by hub id, and that transformer.

    Like HanLP's `electra_zh_small_*.zip`, the transformer archive holds only the
    transformer's config and tokenizer files (the weights are in the tokenizer's model).
    """
    transformer = tiny_hanlp_dir / "transformer"
    electra = {f"{ELECTRA_ZIP.removesuffix('.zip')}/{name}": (transformer / name).read_bytes()
               for name in ("config.json", "tokenizer.json", "tokenizer_config.json")}
    return {TOK_ZIP: hanlp_zip(tiny_hanlp_dir, TOK_ZIP.removesuffix(".zip"), ELECTRA), ELECTRA_ZIP: _zip(electra)}


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Downloads allowed (conftest switches offline mode on for every test), no proxies, a private cache."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                 "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(model_retry, "BACKOFF_SECONDS", 0.01)


def go_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def hub(online: None, monkeypatch: pytest.MonkeyPatch, tiny_embedding_dir: Path, tiny_reranker_dir: Path,
        tiny_llm_dir: Path, hanlp_archives: dict[str, bytes]) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add_repo(REPOS["embedding"], tiny_embedding_dir,
                      {"README.md": b"# bge-m3\n", "onnx/model.onnx": b"onnx" * 256})
        fake.add_repo(REPOS["reranker"], tiny_reranker_dir)
        fake.add_repo(REPOS["llm"], tiny_llm_dir)
        fake.add_file(f"/hanlp/tok/{TOK_ZIP}", hanlp_archives[TOK_ZIP])
        fake.add_file(f"/hanlp/transformers/{ELECTRA_ZIP}", hanlp_archives[ELECTRA_ZIP])
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HANLP_URL", fake.url + "/hanlp/")
        yield fake


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(models_dir=tmp_path / "models", embedding_model=REPOS["embedding"],
                         reranker_model=REPOS["reranker"], llm_model=REPOS["llm"], hanlp_tok_model="")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def offline_settings(monkeypatch: pytest.MonkeyPatch, lines: list[str], models_dir: Path) -> Settings:
    """Apply the printed .env lines as environment, then read settings the normal way."""
    for line in lines:
        key, value = line.split("=", 1)
        monkeypatch.setenv(key, value.strip('"'))
    go_offline(monkeypatch)
    return load_settings(models_dir=models_dir)


# ---------------------------------------------------------------------------- downloads

def test_download_through_endpoint_then_load_offline(hub: FakeHub, settings: Settings,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    results = mm.download_models(settings, ["embedding", "reranker", "llm"], progress=False)

    assert [r.status for r in results] == ["downloaded"] * 3
    for result in results:
        folder = Path(result.path)
        assert folder.parent == settings.models_dir.resolve()
        assert result.commit == hub.repos[result.name].commit
        assert not any(p.is_symlink() for p in folder.rglob("*")), "real files, not links into a cache"
        assert not (folder / ".cache").exists()
        manifest = mm.read_manifest(folder)
        assert manifest["repo_id"] == result.name and manifest["source"] == "hf"
        assert manifest["endpoint"] == hub.url
        for name, entry in manifest["files"].items():
            assert sha256(folder / name) == entry["sha256"] == hub.repos[result.name].files[name].sha256
    embedding = settings.models_dir / "bge-m3"
    assert (embedding / "README.md").is_file() and not (embedding / "onnx").exists(), "ONNX weights skipped"
    assert not list(settings.models_dir.glob(".partial-*"))

    lines = mm.env_lines(settings, results)
    assert f"EMBEDDING_MODEL={embedding.resolve()}" in lines and "HF_HUB_OFFLINE=1" in lines
    requests_before = len(hub.requests)
    offline = offline_settings(monkeypatch, lines, settings.models_dir)
    assert models.resolve_model(offline, "embedding").source == "local folder"
    vectors = models.load_embedding(offline).encode(["我爱北京天安门", "今天天气很好"])
    assert vectors.shape[0] == 2
    assert models.load_reranker(offline).predict([("北京", "我爱北京天安门")]).shape == (1,)
    assert models.load_llm(offline).tokenizer("<|im_start|>user") is not None
    assert len(hub.requests) == requests_before, "offline loading made no request"



def test_cut_off_file_resumes_with_a_range_request(hub: FakeHub, settings: Settings,
                                                   tiny_embedding_dir: Path) -> None:
    big = os.urandom(24 << 20)  # above huggingface_hub's 10 MB read chunk, so a cut-off keeps bytes
    hub.add_repo(REPOS["embedding"], tiny_embedding_dir, {"colbert_linear.pt": big})
    hub.cut_off("colbert_linear.pt")

    [result] = mm.download_models(settings, ["embedding"], progress=False)

    gets = hub.gets("colbert_linear.pt")
    assert len(gets) == 2 and gets[0].range is None
    assert gets[1].range and gets[1].range.startswith("bytes=") and gets[1].range != "bytes=0-"
    assert sha256(Path(result.path) / "colbert_linear.pt") == hashlib.sha256(big).hexdigest()


def test_a_failed_run_is_resumed_by_the_next(hub: FakeHub, settings: Settings,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_retry, "ATTEMPTS", 2)
    hub.fail("model.safetensors", status=503, times=10, method="GET")
    commit = hub.repos[REPOS["embedding"]].commit

    with pytest.raises(mm.ModelDownloadError, match="run the same command again to resume") as failure:
        mm.download_models(settings, ["embedding"], progress=False)
    assert "\n" not in str(failure.value)
    partial = settings.models_dir / ".partial-bge-m3"
    assert (partial / "config.json").is_file() and not (settings.models_dir / "bge-m3").exists()

    hub.clear_faults()
    [result] = mm.download_models(settings, ["embedding"], progress=False)
    assert result.status == "downloaded" and not partial.exists()
    assert len(hub.gets(f"{commit}/config.json")) == 1, "finished files were not fetched again"
    assert mm.download_models(settings, ["embedding"], progress=False)[0].status == "up to date"


def test_hanlp_download_resumes_and_loads_offline(hub: FakeHub, settings: Settings,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    hub.cut_off(TOK_ZIP)

    [result] = mm.download_models(settings, ["hanlp"], progress=False)

    gets = hub.gets(TOK_ZIP)
    assert len(gets) == 2 and gets[1].range and gets[1].range != "bytes=0-", "resumed where it was cut off"
    folder = Path(result.path)
    assert folder.name == TOK_ZIP.removesuffix(".zip") and result.source == "hanlp"
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["transformer"] == str(folder / "transformer")
    assert (folder / "transformer" / "tokenizer.json").is_file()
    assert mm.read_manifest(folder)["transformer"] == ELECTRA
    assert not (folder / mm.DOWNLOADS_DIR).exists()

    offline = offline_settings(monkeypatch, mm.env_lines(settings, [result]), settings.models_dir)
    assert offline.hanlp_tok_model == str(folder)
    tokens = models.load_hanlp_tokenizer(offline)("我爱北京天安门")
    assert "".join(tokens) == "我爱北京天安门"


def test_hanlp_partial_archive_is_kept_for_the_next_run(hub: FakeHub, settings: Settings,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_retry, "ATTEMPTS", 1)
    hub.cut_off(TOK_ZIP)
    with pytest.raises(mm.HubUnreachableError, match="run the same command again to resume"):
        mm.download_models(settings, ["hanlp"], progress=False)
    [part] = settings.models_dir.glob(f".partial-*/{mm.DOWNLOADS_DIR}/{TOK_ZIP}.part")
    kept = part.stat().st_size
    assert 0 < kept < len(hub.plain_files[f"/hanlp/tok/{TOK_ZIP}"])

    [result] = mm.download_models(settings, ["hanlp"], progress=False)
    assert result.status == "downloaded"
    assert hub.gets(TOK_ZIP)[-1].range == f"bytes={kept}-"


def test_hanlp_transformer_missing_from_hanlp_mirrors_comes_from_the_hub(
        hub: FakeHub, settings: Settings, tiny_hanlp_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = hub.add_file("/mine/my_tok_20240101.zip", hanlp_zip(tiny_hanlp_dir, "my_tok", "tiny-org/encoder"))
    hub.add_repo("tiny-org/encoder", tiny_hanlp_dir / "transformer")
    settings = settings.model_copy(update={"askany_hanlp_tok_url": url})  # the ASKANY_HANLP_TOK_URL setting

    [result] = mm.download_models(settings, ["hanlp"], progress=False)

    transformer = Path(result.path) / "transformer"
    assert Path(result.path).name == "my_tok_20240101"
    assert (transformer / "tokenizer.json").is_file() and not (transformer / "model.safetensors").exists()
    assert not (transformer / ".cache").exists()
    offline = offline_settings(monkeypatch, mm.env_lines(settings, [result]), settings.models_dir)
    assert "".join(models.load_hanlp_tokenizer(offline)("天安门")) == "天安门"


def test_downloads_go_through_http_proxy(hub: FakeHub, settings: Settings,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """An endpoint this machine cannot resolve is reached through HTTP_PROXY (the stand-in hub)."""
    from huggingface_hub import close_session

    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", hub.url)
    monkeypatch.setenv("HANLP_URL", "http://hanlp.example/hanlp/")
    close_session()  # huggingface_hub reads the proxy variables when it creates its shared client
    try:
        results = mm.download_models(settings, ["embedding", "hanlp"], endpoint="http://hub.example",
                                     progress=False)
    finally:
        monkeypatch.delenv("HTTP_PROXY")
        close_session()
    assert [r.status for r in results] == ["downloaded", "downloaded"]
    assert hub.requests and all(r.proxied for r in hub.requests)
    assert mm.read_manifest(Path(results[0].path))["endpoint"] == "http://hub.example"


# ---------------------------------------------------------------------------- verification

def test_verify_models_catches_a_corrupted_file(hub: FakeHub, settings: Settings) -> None:
    mm.download_models(settings, ["embedding"], progress=False)
    rows = {row.role: row for row in mm.verify_models(settings, progress=False)}
    assert rows["embedding"].ok and rows["embedding"].checksums_ok
    assert not rows["reranker"].ok and "--download-models reranker" in rows["reranker"].problem
    assert rows["hanlp"].ok and rows["hanlp"].path is None, "not configured: jieba is used"

    weights = settings.models_dir / "bge-m3" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte
    weights.write_bytes(bytes(data))
    row = mm.verify_models(settings, progress=False)[0]
    assert not row.ok and row.checksums_ok is False and "model.safetensors" in row.checksums
    assert row.weights_ok, "the structure is intact: only the checksum can tell"
    assert "--download-models embedding" in row.problem

    weights.write_bytes(bytes(data[:-100]))
    row = mm.verify_models(settings, progress=False)[0]
    assert row.weights_ok is False and "truncated" in row.weights

    rows = mm.verify_models(settings.model_copy(update={"llm_backend": "openai"}), progress=False)
    assert rows[2].role == "llm" and rows[2].ok and rows[2].files == "not used (LLM_BACKEND=openai)"


# ---------------------------------------------------------------------------- bad input

def test_bad_input_changes_nothing(hub: FakeHub, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(mm.UnknownRoleError, match="use one or more of: embedding, reranker, llm, hanlp"):
        mm.download_models(settings, ["embeding"])
    with pytest.raises(mm.ModelManagerError, match="Unknown source"):
        mm.download_models(settings, ["embedding"], source="ftp")
    assert not settings.models_dir.exists()

    mine = settings.models_dir / "bge-m3"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(mm.TargetExistsError, match="already exists") as refused:
        mm.download_models(settings, ["embedding", "reranker"])
    assert "EMBEDDING_MODEL=" in str(refused.value)
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert hub.requests == [], "refused before any download"

    go_offline(monkeypatch)
    with pytest.raises(mm.OfflineModeError, match="HF_HUB_OFFLINE"):
        mm.download_models(settings, ["reranker"])


def test_unreachable_endpoint_fails_in_seconds(online: None, settings: Settings,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_retry, "BACKOFF_SECONDS", 0.5)  # the real backoff
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    existing = settings.models_dir / "bge-reranker-v2-m3"
    existing.mkdir(parents=True)
    (existing / "config.json").write_text("{}", encoding="utf-8")

    started = time.monotonic()
    with pytest.raises(mm.HubUnreachableError) as failure:
        mm.download_models(settings, ["embedding"], endpoint=endpoint, progress=False)
    assert time.monotonic() - started < 10
    message = str(failure.value)
    assert message.startswith(f"{endpoint} does not answer") and "\n" not in message
    assert all(hint in message for hint in ("HF_ENDPOINT", "hf-mirror.com", "--source modelscope", "--import-models"))
    assert sorted(p.name for p in settings.models_dir.iterdir() if not p.name.startswith(".askany")) \
        == ["bge-reranker-v2-m3"]
    assert (existing / "config.json").read_text(encoding="utf-8") == "{}"


def test_disk_full_keeps_the_partial_and_other_folders(hub: FakeHub, settings: Settings,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.file_download as file_download

    mm.download_models(settings, ["reranker"], progress=False)
    reranker_before = tree_digest(settings.models_dir / "bge-reranker-v2-m3")
    real_http_get = file_download.http_get

    def http_get(url: str, temp_file: io.BufferedWriter, **kwargs: object) -> None:
        if url.endswith("model.safetensors"):
            temp_file.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        real_http_get(url, temp_file, **kwargs)

    monkeypatch.setattr(file_download, "http_get", http_get)
    with pytest.raises(mm.DiskFullError, match="is full") as failure:
        mm.download_models(settings, ["embedding"], progress=False)
    assert ".partial-bge-m3" in str(failure.value)
    assert (settings.models_dir / ".partial-bge-m3" / "config.json").is_file()
    assert not (settings.models_dir / "bge-m3").exists()
    assert tree_digest(settings.models_dir / "bge-reranker-v2-m3") == reranker_before


def test_modelscope_needs_its_package(online: None, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "modelscope", None)  # import fails as when it is not installed
    with pytest.raises(mm.ModelScopeMissingError, match=r"pip install 'askany\[modelscope\]'"):
        mm.download_models(settings, ["llm"], source="modelscope")
    assert [p.name for p in settings.models_dir.iterdir() if not p.name.startswith(".askany")] == []


# ---------------------------------------------------------------------------- Hugging Face cache

def fake_hf_cache(cache: Path, repo_id: str, folder: Path, commit: str = "a" * 40) -> Path:
    """The hub cache layout: blobs by hash, a snapshot of relative symlinks, refs/main."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        blob = repo / "blobs" / sha256(path)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(path.read_bytes())
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    return snapshot


def test_import_from_the_hf_cache(settings: Settings, tiny_reranker_dir: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hub-cache"
    fake_hf_cache(cache, REPOS["reranker"], tiny_reranker_dir)

    [result] = mm.import_hf_cache(settings, [REPOS["reranker"]], cache_dir=cache, progress=False)

    folder = Path(result.path)
    assert result.status == "imported" and result.role == "reranker" and result.commit == "a" * 40
    assert not any(p.is_symlink() for p in folder.rglob("*"))
    assert tree_digest(folder) == {**tree_digest(tiny_reranker_dir), mm.MANIFEST: sha256(folder / mm.MANIFEST)}
    assert mm.read_manifest(folder)["source"] == "hf-cache"
    go_offline(monkeypatch)
    assert models.load_reranker(settings).predict([("北京", "天安门")]).shape == (1,)

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    statuses = {r.name: r.status for r in mm.import_hf_cache(settings, progress=False)}
    assert statuses == {REPOS["embedding"]: "not in cache", REPOS["reranker"]: "imported",
                        REPOS["llm"]: "not in cache"}
    with pytest.raises(mm.NotInCacheError, match="is not in the Hugging Face cache"):
        mm.import_hf_cache(settings, ["BAAI/no-such-model"], cache_dir=cache)


# ---------------------------------------------------------------------------- bundles

def test_export_import_round_trip(hub: FakeHub, settings: Settings, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    mm.download_models(settings, ["embedding", "hanlp"], progress=False)
    bundle = tmp_path / "models.tar"
    exported = mm.export_models(settings, bundle, progress=False)
    assert exported.models == ["bge-m3", TOK_ZIP.removesuffix(".zip")] and bundle.is_file()

    other = tmp_path / "elsewhere" / "models"
    results = mm.import_models(settings, bundle, models_dir=other, progress=False)

    assert {r.status for r in results} == {"imported"}
    assert tree_digest(other / "bge-m3") == tree_digest(settings.models_dir / "bge-m3")
    hanlp_folder = other / TOK_ZIP.removesuffix(".zip")
    config = json.loads((hanlp_folder / "config.json").read_text(encoding="utf-8"))
    assert config["transformer"] == str(hanlp_folder.resolve() / "transformer"), "pointed at its new place"
    assert not list(other.glob(".import-*"))
    moved = settings.model_copy(update={"models_dir": other})
    rows = {row.role: row for row in mm.verify_models(moved, progress=False)}
    assert rows["embedding"].ok and rows["hanlp"].ok and rows["hanlp"].checksums_ok

    offline = offline_settings(monkeypatch, mm.env_lines(moved, results), other)
    assert "".join(models.load_hanlp_tokenizer(offline)("今天天气很好")) == "今天天气很好"
    assert models.load_embedding(offline).encode(["你好"]).shape[0] == 1


def _member_offset(bundle: Path, name: str) -> int:
    with tarfile.open(bundle) as tar:
        return tar.getmember(name).offset_data


def test_tampered_or_truncated_bundle_is_refused(hub: FakeHub, settings: Settings, tmp_path: Path) -> None:
    mm.download_models(settings, ["embedding"], progress=False)
    bundle = tmp_path / "models.tar"
    mm.export_models(settings, bundle, progress=False)
    other = tmp_path / "other"
    keep = other / "my-model"
    keep.mkdir(parents=True)
    (keep / "weights.bin").write_bytes(b"precious")

    tampered = tmp_path / "tampered.tar"
    data = bytearray(bundle.read_bytes())
    data[_member_offset(bundle, "bge-m3/config.json") + 5] ^= 0x01
    tampered.write_bytes(bytes(data))
    with pytest.raises(mm.BundleError, match="does not match its checksum manifest"):
        mm.import_models(settings, tampered, models_dir=other, progress=False)

    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    with pytest.raises(mm.BundleError, match="truncated"):
        mm.import_models(settings, truncated, models_dir=other, progress=False)

    (other / "bge-m3").mkdir()
    (other / "bge-m3" / "other.txt").write_text("someone else's", encoding="utf-8")
    with pytest.raises(mm.TargetExistsError):
        mm.import_models(settings, bundle, models_dir=other, progress=False)

    assert sorted(p.name for p in other.iterdir() if not p.name.startswith(".askany")) == ["bge-m3", "my-model"]
    assert (other / "bge-m3" / "other.txt").read_text(encoding="utf-8") == "someone else's"
    assert (keep / "weights.bin").read_bytes() == b"precious"


def _bundle_with(path: Path, members: list[tarfile.TarInfo], listed: dict[str, dict]) -> Path:
    """A hand-made bundle: `members` (data-less) plus a manifest listing `listed` under the folder "m"."""
    with tarfile.open(path, "w") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
        manifest = json.dumps({"format": 1, "models": {"m": {"manifest": None, "files": listed}}}).encode()
        info = tarfile.TarInfo("askany-bundle.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    return path


def test_bundle_with_unsafe_members_is_refused(settings: Settings, tmp_path: Path) -> None:
    """Names that escape the models folder and links are refused before anything is extracted."""
    escape = tarfile.TarInfo("m/../../escaped.txt")
    escape.size = 1
    refused = _bundle_with(tmp_path / "escape.tar", [escape], {"../../escaped.txt": {"size": 1, "sha256": ""}})
    with pytest.raises(mm.BundleError, match="contains an unsafe file name"):
        mm.import_models(settings, refused, progress=False)

    link = tarfile.TarInfo("m/config.json")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    linked = _bundle_with(tmp_path / "link.tar", [link], {"config.json": {"size": 0, "sha256": ""}})
    with pytest.raises(mm.BundleError, match="does not match its checksum manifest"):
        mm.import_models(settings, linked, progress=False)
    assert not (tmp_path / "escaped.txt").exists()
    assert not settings.models_dir.exists() or not any(settings.models_dir.glob("m*"))


def test_retries_transient_failures_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_retry, "BACKOFF_SECONDS", 0.01)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise model_retry.Transient("short read")
        return "done"

    assert model_retry.retrying(flaky, "a step") == "done" and len(calls) == 3
    calls.clear()

    def broken() -> None:
        calls.append(1)
        raise ValueError("not a network problem")

    with pytest.raises(ValueError):
        model_retry.retrying(broken, "a step")
    assert len(calls) == 1, "only transient failures are tried again"
    monkeypatch.setattr(model_retry, "ATTEMPTS", 2)
    with pytest.raises(model_retry.Transient):
        model_retry.retrying(lambda: (_ for _ in ()).throw(model_retry.Transient("again")), "a step")


# ---------------------------------------------------------------------------- .env

def test_write_env_updates_keys_and_keeps_the_rest(tmp_path: Path) -> None:
    from dotenv import dotenv_values

    env = tmp_path / ".env"
    env.write_text("# my settings\nPOSTGRES_PORT=5433\nEMBEDDING_MODEL=BAAI/bge-m3\nexport HF_HUB_OFFLINE=0\n"
                   "EMBEDDING_MODEL=duplicate\n", encoding="utf-8")
    result = mm.DownloadResult("embedding", "BAAI/bge-m3", "/models dir/bge-m3", "hf", "downloaded")
    lines = mm.env_lines(load_settings(models_dir=Path("/models dir")), [result])
    assert lines == ['EMBEDDING_MODEL="/models dir/bge-m3"', "EMBEDDING_LOCAL_FILES_ONLY=true", "HF_HUB_OFFLINE=1"]

    mm.write_env(lines, env)

    text = env.read_text(encoding="utf-8")
    assert text.startswith("# my settings\nPOSTGRES_PORT=5433\n") and "duplicate" not in text
    assert dotenv_values(env) == {"POSTGRES_PORT": "5433", "EMBEDDING_MODEL": "/models dir/bge-m3",
                                  "HF_HUB_OFFLINE": "1", "EMBEDDING_LOCAL_FILES_ONLY": "true"}


def test_write_env_creates_the_file_and_quotes_what_needs_it(tmp_path: Path) -> None:
    from dotenv import dotenv_values

    env = tmp_path / "new.env"
    mm.write_env(['EMBEDDING_MODEL="/models/$HOME/bge m3"', "EMBEDDING_LOCAL_FILES_ONLY=true", "HF_HUB_OFFLINE=1"],
                 env)
    text = env.read_text(encoding="utf-8")
    assert text.startswith("# Local model folders") and "EMBEDDING_LOCAL_FILES_ONLY=true\n" in text
    assert dotenv_values(env) == {"EMBEDDING_MODEL": "/models/$HOME/bge m3", "EMBEDDING_LOCAL_FILES_ONLY": "true",
                                  "HF_HUB_OFFLINE": "1"}, "written literally: nothing expanded"


# ---------------------------------------------------------------------------- command line

@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A .env file and MODELS_DIR for commands that read settings the way the CLI does."""
    env = tmp_path / "askany.env"
    env.write_text("POSTGRES_PORT=5433\n", encoding="utf-8")
    monkeypatch.setenv("ASKANY_ENV_FILE", str(env))
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


def run_cli(argv: list[str], **namespace: object) -> int:
    """Through askany.main once it knows the model options, else the handlers directly."""
    from askany.cli import main

    known = {action.dest for action in main.build_parser()._actions}
    if "download_models" in known:
        return main.main(argv)
    defaults = {"download_models": None, "source": "hf", "endpoint": None, "models_dir": None, "write_env": False,
                "verify_models": False, "import_hf_cache": None, "export_models": None, "import_models": None,
                "json": True, "no_progress": True}
    args = argparse.Namespace(**{**defaults, **namespace})
    handler = (model_commands.download if args.download_models is not None else model_commands.verify
               if args.verify_models else model_commands.export if args.export_models
               else model_commands.import_bundle if args.import_models else model_commands.import_cache)
    return handler(args)


def test_cli_download_verify_export_import(hub: FakeHub, cli_env: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli(["--download-models", "embedding", "--write-env", "--json", "--no-progress"],
                     download_models=["embedding"], write_env=True)
    report = json.loads(capsys.readouterr().out)
    folder = tmp_path / "models" / "bge-m3"
    assert status == 0 and report["ok"] and report["models"][0]["status"] == "downloaded"
    assert report["env_written"] == str(cli_env)
    env_text = cli_env.read_text(encoding="utf-8")
    assert "POSTGRES_PORT=5433" in env_text and f"EMBEDDING_MODEL={folder.resolve()}" in env_text

    get_settings.cache_clear()
    status = run_cli(["--verify-models", "--json"], verify_models=True)
    rows = {row["role"]: row for row in json.loads(capsys.readouterr().out)["models"]}
    assert status == 1, "reranker and LLM are not downloaded"
    assert rows["embedding"]["ok"] and rows["embedding"]["checksums_ok"]

    bundle = tmp_path / "bundle.tar"
    assert run_cli(["--export-models", str(bundle), "--json"], export_models=bundle) == 0
    assert json.loads(capsys.readouterr().out)["models"] == ["bge-m3"]
    assert run_cli(["--import-models", str(bundle), "--models-dir", str(tmp_path / "copy"), "--json"],
                   import_models=bundle, models_dir=tmp_path / "copy") == 0
    assert json.loads(capsys.readouterr().out)["models"][0]["status"] == "imported"

    assert run_cli(["--download-models", "embedding", "--models-dir", str(tmp_path / "copy"), "--json"],
                   download_models=["embedding"], models_dir=tmp_path / "copy") == 0
    assert json.loads(capsys.readouterr().out)["models"][0]["status"] == "skipped", "EMBEDDING_MODEL is a folder now"

    assert run_cli(["--verify-models"], verify_models=True, json=False) == 1
    assert "embedding" in capsys.readouterr().out
