"""Model management: download, verify, import and export the model folders AskAny loads offline.

Every role (see `askany.models.ROLES`) ends up as a plain folder of real files in
`MODELS_DIR/<name>` (`name` is the last part of the repo id, the same rule
`askany.models.resolve_model` looks up), with `askany-manifest.json` recording the
sha256 and size of every file, where it came from and which commit.

Downloads go to a sibling `MODELS_DIR/.partial-<name>` that is kept between runs,
so running the same command again resumes; only a folder that passed the checks is
renamed into place, so an existing model folder is never half-replaced.

Sources and network settings (all read when the function runs, not at import):

* Hugging Face (default): `huggingface_hub.snapshot_download` against `--endpoint`,
  else `HF_ENDPOINT` (a mirror such as https://hf-mirror.com), else huggingface.co.
  huggingface_hub 2.4 talks through an `httpx2.Client` created with
  `trust_env=True`, so `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY`/`NO_PROXY` apply
  (read once, when its shared client is first created). It resumes at file
  granularity across runs: finished files in the partial folder are recognised by
  their metadata in `.partial-<name>/.cache/huggingface/` and skipped; a file cut
  off mid-way is resumed with an HTTP Range request inside the same run (up to 5
  times), but its partial bytes are discarded when the process ends.
* ModelScope (`source="modelscope"`): `modelscope.snapshot_download`, an optional
  extra (`pip install 'askany[modelscope]'`); `--endpoint` sets `MODELSCOPE_DOMAIN`.
* HanLP (role `hanlp`, any source): HanLP's own file server over `httpx` (which
  also honours the proxy variables) with Range resume across runs. The tokenizer
  archive is `HANLP_TOK_MODEL` when that is a URL or a `hanlp.pretrained` key,
  else `ASKANY_HANLP_TOK_URL`, else HanLP's `COARSE_ELECTRA_SMALL_ZH`; its host
  is `HANLP_URL` (HanLP's own variable: the base URL, default
  https://file.hankcs.com/hanlp/). The transformer the tokenizer names (for
  example `hfl/chinese-electra-180g-small-discriminator`, which HanLP itself would
  fetch at load time as `transformers/electra_zh_small_*.zip`) is put in
  `<folder>/transformer` and `config.json` is rewritten to point at it, so
  `hanlp.load(folder)` works with no network.

Transient errors (connection errors, timeouts, 408/429/5xx) are retried
`ATTEMPTS` times with exponential backoff; a user-fixable failure raises an
`AskAnyError` subclass whose text is one sentence naming the fix.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import math
import os
import shutil
import struct
import sys
import tarfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from askany.config import Settings
from askany.errors import AskAnyError, ModelUnavailableError
from askany.models import (
    ROLE_SETTING,
    ROLES,
    WEIGHT_FILES,
    _models_dir_candidate,
    check_model_folder,
    hub_offline,
    missing_files,
    resolve_model,
    role_name,
)

log = logging.getLogger(__name__)

MANIFEST = "askany-manifest.json"
BUNDLE_MANIFEST = "askany-bundle.json"
FORMAT = 1
SOURCES = ("hf", "modelscope")
HUB_ROLES = ("embedding", "reranker", "llm")
DEFAULT_ENDPOINT = "https://huggingface.co"
MIRROR_EXAMPLE = "https://hf-mirror.com"
DEFAULT_HANLP_URL = "https://file.hankcs.com/hanlp/"
DOWNLOADS_DIR = ".askany-downloads"
#: What download tools leave inside a target folder: never part of a model.
LEFTOVERS = (".cache", DOWNLOADS_DIR, "._____temp", ".msc", ".mdl", ".mv")
#: Files AskAny never needs: other runtimes' weights, pictures for the model card.
IGNORE_PATTERNS = ["onnx/*", "*.onnx", "*.onnx_data", "openvino/*", "*.h5", "*.msgpack", "*.ot",
                   "flax_model*", "tf_model*", "rust_model*", "*.gguf", "imgs/*", "assets/*",
                   "*.jpg", "*.jpeg", "*.png", "*.gif"]
#: What a HanLP transformer folder needs when weights come from the HanLP model itself.
TRANSFORMER_PATTERNS = ["config.json", "tokenizer*", "vocab*", "special_tokens_map.json", "added_tokens.json",
                        "merges.txt", "*.model", "sentencepiece*"]

ATTEMPTS = 3  # tries per network step, so an unreachable endpoint fails in seconds
BACKOFF_SECONDS = 0.5  # doubled after each failed try
CHUNK = 1 << 20
ENV_KEYS = {
    "embedding": ("EMBEDDING_MODEL", "EMBEDDING_LOCAL_FILES_ONLY"),
    "reranker": ("RERANKER_MODEL", "RERANKER_LOCAL_FILES_ONLY"),
    "llm": ("LLM_MODEL", "LLM_LOCAL_FILES_ONLY"),
    "hanlp": ("HANLP_TOK_MODEL", None),
}


# ====================================================================== errors

class ModelManagerError(AskAnyError):
    """A model download, check, import or export that the user can fix."""


class UnknownRoleError(ModelManagerError):
    pass


class OfflineModeError(ModelManagerError):
    pass


class HubUnreachableError(ModelManagerError):
    pass


class ModelDownloadError(ModelManagerError):
    pass


class DiskFullError(ModelManagerError):
    pass


class TargetExistsError(ModelManagerError):
    pass


class ModelScopeMissingError(ModelManagerError):
    pass


class NotInCacheError(ModelManagerError):
    pass


class BundleError(ModelManagerError):
    pass


class ModelsDirBusyError(ModelManagerError):
    pass


class _Transient(Exception):
    """A network step ended early (short read, incomplete snapshot): worth another try."""


# ====================================================================== results

@dataclass
class DownloadResult:
    """A model folder put in place (or found in place) by a download or an import."""

    role: str
    name: str
    path: str | None
    source: str
    status: str  # downloaded, up to date, imported, skipped, not in cache
    commit: str | None = None
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("downloaded", "up to date", "imported")


@dataclass
class VerifyRow:
    """One role's state: one field per column of `--verify-models`, and whether all passed."""

    role: str
    setting: str
    path: str | None
    files_ok: bool = False
    files: str = "-"
    config_ok: bool = False
    config: str = "-"
    weights_ok: bool = False
    weights: str = "-"
    checksums_ok: bool | None = None  # None: not downloaded by AskAny, nothing recorded
    checksums: str = "-"
    ok: bool = False
    problem: str | None = None


@dataclass
class ExportResult:
    path: str
    models: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class _Plan:
    """What to fetch for one role: from where, and under which folder name."""

    role: str
    source: str  # hf, modelscope, hanlp, or local (nothing to fetch)
    repo_id: str  # hub id, or the archive name for HanLP
    name: str  # folder name in MODELS_DIR
    url: str | None = None  # HanLP archive URL


# ====================================================================== public API

def download_models(settings: Settings, roles: list[str] | None = None, source: str = "hf",
                    endpoint: str | None = None, models_dir: Path | str | None = None,
                    progress: bool = True) -> list[DownloadResult]:
    """Fetch each role's model into `MODELS_DIR/<name>`; all roles when `roles` is empty.

    Every target is checked before anything is fetched, so bad input changes nothing.
    A role already downloaded by AskAny from the same repo is reported "up to date"
    without touching the network (delete its folder to fetch it again).
    """
    settings = _with_models_dir(settings, models_dir)
    wanted = _check_roles(roles)
    if source not in SOURCES:
        raise ModelManagerError(f"Unknown source '{source}'; use one of: {', '.join(SOURCES)}.")
    _refuse_when_offline()
    plans = [_plan(settings, role, source) for role in wanted]
    for plan in plans:
        if plan.source != "local":
            _check_target(plan.repo_id, _target(settings, plan), ROLE_SETTING[plan.role])
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    with _models_dir_lock(settings.models_dir), _only_this_endpoint(_endpoint(endpoint)):
        return [_download_one(settings, plan, endpoint, progress) for plan in plans]


def verify_models(settings: Settings, models_dir: Path | str | None = None,
                  progress: bool = True) -> list[VerifyRow]:
    """Check every role's folder: files, config, weights and recorded checksums (no network)."""
    settings = _with_models_dir(settings, models_dir)
    return [_verify_role(settings, role, progress) for role in ROLES]


def import_hf_cache(settings: Settings, model_ids: list[str] | None = None, cache_dir: Path | str | None = None,
                    models_dir: Path | str | None = None, progress: bool = True) -> list[DownloadResult]:
    """Copy models from the Hugging Face cache (`models--ORG--NAME/snapshots/<hash>`) into MODELS_DIR.

    Without `model_ids` the configured embedding, reranker and LLM ids are imported,
    and those not in the cache are reported rather than refused.
    """
    settings = _with_models_dir(settings, models_dir)
    cache = _hf_cache_dir(cache_dir)
    explicit = bool(model_ids)
    ids = list(model_ids) if model_ids else [role_name(settings, r) for r in HUB_ROLES
                                              if not _is_local_path(role_name(settings, r))]
    found: list[tuple[str, Path | None]] = []
    for repo_id in ids:
        snapshot = _cached_snapshot(cache, repo_id)
        if snapshot is None and explicit:
            raise NotInCacheError(f"{repo_id} is not in the Hugging Face cache at {cache}; download it with "
                                  f"python -m askany.main --download-models, or pass the right cache folder.")
        if snapshot is not None:
            _check_target(repo_id, settings.models_dir / _folder_name(repo_id), _setting_for(settings, repo_id))
        found.append((repo_id, snapshot))
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    results = []
    with _models_dir_lock(settings.models_dir):
        for repo_id, snapshot in found:
            role = _role_for_repo(settings, repo_id)
            if snapshot is None:
                results.append(DownloadResult(role or "", repo_id, None, "hf-cache", "not in cache",
                                              note=f"not in {cache}"))
                continue
            results.append(_import_snapshot(settings, role, repo_id, snapshot, cache, progress))
    return results


def export_models(settings: Settings, tar_path: Path | str, models_dir: Path | str | None = None,
                  progress: bool = True) -> ExportResult:
    """Write every model folder of MODELS_DIR into one tar with a checksum manifest (written last).

    A folder that no longer matches its own recorded checksums is refused: a
    damaged model must not travel to a machine that cannot download it again.
    """
    settings = _with_models_dir(settings, models_dir)
    tar_path = Path(tar_path)
    folders = _model_folders(settings.models_dir)
    if not folders:
        raise ModelManagerError(f"There are no model folders in {settings.models_dir} to export; "
                                f"run python -m askany.main --download-models first.")
    if not tar_path.parent.is_dir():
        raise ModelManagerError(f"The folder {tar_path.parent} for the bundle does not exist; create it first.")
    started = time.monotonic()
    partial = tar_path.with_name(tar_path.name + ".partial")
    result = ExportResult(str(tar_path.resolve()))
    total = sum(_folder_bytes(folder) for folder in folders)
    try:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar, _bar(total, "Exporting", progress) as bar:
            bundle: dict[str, Any] = {"format": FORMAT, "created": _now(), "models": {}}
            for folder in folders:
                files = _export_folder(tar, folder, bar)
                _refuse_if_damaged(folder, files)
                bundle["models"][folder.name] = {"manifest": read_manifest(folder), "files": files}
                result.models.append(folder.name)
                result.files += len(files)
                result.bytes += sum(f["size"] for f in files.values())
            _add_bytes(tar, BUNDLE_MANIFEST, json.dumps(bundle, ensure_ascii=False, indent=2).encode())
        partial.replace(tar_path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        if _is_disk_full(error):
            raise DiskFullError(f"The disk holding {tar_path.parent} is full (the bundle needs about "
                                f"{human_size(total)}); free some space or write it elsewhere.") from None
        raise
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    result.seconds = round(time.monotonic() - started, 3)
    return result


def import_models(settings: Settings, tar_path: Path | str, models_dir: Path | str | None = None,
                  progress: bool = True) -> list[DownloadResult]:
    """Unpack a bundle from `export_models` into MODELS_DIR, all checksums verified first.

    Each folder is extracted to a hidden staging folder and renamed into place only
    after every file of the bundle matched; on any problem all staging folders are
    removed, so nothing half-copied is left and existing folders are untouched.
    """
    settings = _with_models_dir(settings, models_dir)
    tar_path = Path(tar_path)
    started = time.monotonic()
    if not tar_path.is_file():
        raise BundleError(f"The bundle {tar_path} does not exist; pass the .tar made by --export-models.")
    with _open_bundle(tar_path) as (tar, members, bundle):
        models = bundle["models"]
        for name, entry in models.items():
            repo_id = (entry.get("manifest") or {}).get("repo_id")
            role = (entry.get("manifest") or {}).get("role")
            _check_target(repo_id, settings.models_dir / name, ROLE_SETTING.get(role or "", "the model setting"))
        settings.models_dir.mkdir(parents=True, exist_ok=True)
        with _models_dir_lock(settings.models_dir):
            staged = _stage_bundle(settings.models_dir, tar_path, tar, members, models, progress)
            try:
                for name, staging in staged.items():
                    _prepare_import(settings.models_dir / name, models[name], staging)
                results = [_move_import(settings.models_dir / name, models[name], staging)
                           for name, staging in staged.items()]
            finally:
                _remove_all(staged.values())
    seconds = round(time.monotonic() - started, 3)
    for result in results:
        result.seconds = seconds
    return results


def env_lines(settings: Settings, results: list[DownloadResult]) -> list[str]:
    """The `.env` lines that make AskAny load these folders with no network access."""
    lines: list[str] = []
    for result in results:
        if not result.ok or not result.path or result.role not in ENV_KEYS:
            continue
        model_key, offline_key = ENV_KEYS[result.role]
        lines.append(f"{model_key}={_env_value(result.path)}")
        if offline_key:
            lines.append(f"{offline_key}=true")
    parents = {str(Path(r.path).parent) for r in results if r.ok and r.path}
    if len(parents) == 1 and Path(next(iter(parents))) != settings.models_dir.resolve():
        lines.append(f"MODELS_DIR={_env_value(next(iter(parents)))}")
    if lines:
        lines.append("HF_HUB_OFFLINE=1")
    return lines


def write_env(lines: list[str], env_path: Path | str) -> Path:
    """Set these keys in `env_path`, keeping every other line and comment (created when missing)."""
    env_path = Path(env_path)
    updates = dict(line.split("=", 1) for line in lines)
    old = env_path.read_text(encoding="utf-8").splitlines() if env_path.is_file() else []
    new: list[str] = []
    written: set[str] = set()
    for line in old:
        key = _env_key(line)
        if key in updates:
            if key not in written:
                new.append(f"{key}={updates[key]}")
                written.add(key)
            continue
        new.append(line)
    added = [key for key in updates if key not in written]
    if added:
        if new and new[-1].strip():
            new.append("")
        new.append("# Local model folders written by python -m askany.main --download-models (offline use)")
        new.extend(f"{key}={updates[key]}" for key in added)
    _atomic_write(env_path, "\n".join(new) + "\n")
    return env_path


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's `askany-manifest.json`, or None when AskAny did not put it there."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else None


# ====================================================================== planning

def _with_models_dir(settings: Settings, models_dir: Path | str | None) -> Settings:
    return settings.model_copy(update={"models_dir": Path(models_dir)}) if models_dir else settings


def _check_roles(roles: list[str] | None) -> list[str]:
    unknown = [role for role in roles or [] if role not in ROLES]
    if unknown:
        raise UnknownRoleError(f"Unknown model role '{unknown[0]}'; use one or more of: {', '.join(ROLES)}.")
    return list(dict.fromkeys(roles)) if roles else list(ROLES)


def _refuse_when_offline() -> None:
    """A download was asked for, but the environment forbids any hub access: say so, do nothing."""
    from huggingface_hub import constants

    if hub_offline() or constants.HF_HUB_OFFLINE:
        raise OfflineModeError("HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, which forbids downloads; "
                               "run this command with HF_HUB_OFFLINE=0 or unset it for the download.")


def _is_local_path(name: str) -> bool:
    """The same rule as `askany.models.resolve_model`: an existing path or one written as a path."""
    return bool(name) and (Path(name).expanduser().exists() or name.startswith((".", "/", "~")))


def _folder_name(repo_id: str) -> str:
    return repo_id.rstrip("/").split("/")[-1]


def _plan(settings: Settings, role: str, source: str) -> _Plan:
    name = role_name(settings, role)
    if role == "hanlp":
        if _is_local_path(name):
            return _Plan(role, "local", name, Path(name).name)
        url = _hanlp_archive_url(name)
        stem = _archive_stem(url)
        return _Plan(role, "hanlp", stem, stem, url)
    if _is_local_path(name):
        return _Plan(role, "local", name, Path(name).name)
    if not name:
        raise ModelManagerError(f"{ROLE_SETTING[role]} is empty; set it to a hub id such as BAAI/bge-m3.")
    return _Plan(role, source, name, _models_dir_candidate(settings, name).name)


def _target(settings: Settings, plan: _Plan) -> Path:
    return settings.models_dir / plan.name


def _check_target(repo_id: str | None, target: Path, setting: str) -> None:
    """Refuse a target folder holding anything but an earlier AskAny copy of the same model."""
    if not target.exists():
        return
    if target.is_dir() and not any(target.iterdir()):
        return
    manifest = read_manifest(target) if target.is_dir() else None
    if manifest is not None and repo_id and manifest.get("repo_id") == repo_id:
        return
    what = f"an AskAny download of {repo_id}" if repo_id else "this model"
    raise TargetExistsError(f"{target} already exists and holds something other than {what}; move it away, "
                            f"or set {setting}={target.resolve()} to use it as it is.")


@contextlib.contextmanager
def _models_dir_lock(models_dir: Path) -> Iterator[None]:
    """One download or import at a time per models folder; tidy what a killed run left behind."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(models_dir / ".askany.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ModelsDirBusyError(f"Another AskAny download or import is writing to {models_dir}; "
                                 f"wait for it to finish and run this command again.") from None
    try:
        _clear_stale(models_dir)
        yield
    finally:
        lock.release()


def _clear_stale(models_dir: Path) -> None:
    """Staging folders of a killed import go; a model swapped out but not yet replaced comes back."""
    for path in models_dir.glob(".import-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in models_dir.glob(".old-*"):
        original = models_dir / path.name.removeprefix(".old-").rsplit("-", 1)[0]
        if original.exists():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.rename(original)


# ====================================================================== one download

def _download_one(settings: Settings, plan: _Plan, endpoint: str | None, progress: bool) -> DownloadResult:
    if plan.source == "local":
        return DownloadResult(plan.role, plan.repo_id, str(Path(plan.repo_id).expanduser().resolve()), "local",
                              "skipped", note=f"{ROLE_SETTING[plan.role]} is a local folder: nothing to download")
    target = _target(settings, plan)
    manifest = read_manifest(target)
    if manifest is not None and _looks_complete(plan.role, target, manifest):
        result = _result(plan, target, manifest, "up to date", 0.0)
        result.note = "already downloaded (delete the folder to fetch it again)"
        return result
    partial = settings.models_dir / f".partial-{plan.name}"
    started = time.monotonic()
    log.info("Downloading the %s model %s into %s", plan.role, plan.repo_id, target)
    try:
        meta, expected = _fetch(settings, plan, partial, target, endpoint, progress)
        manifest = _finish_download(plan, partial, target, meta, expected, progress)
    except OSError as error:
        if not _is_disk_full(error):
            raise
        raise DiskFullError(f"The disk holding {settings.models_dir} is full while downloading the {plan.role} "
                            f"model; free some space and run the same command again to resume (finished files "
                            f"are kept in {partial}).") from None
    finally:
        with contextlib.suppress(OSError):
            partial.rmdir()  # only when nothing was fetched: a partial download is kept for the re-run
    return _result(plan, target, manifest, "downloaded", time.monotonic() - started)


def _fetch(settings: Settings, plan: _Plan, partial: Path, target: Path, endpoint: str | None,
           progress: bool) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Fill `partial`; return manifest fields and the expected files (size, sha256, git blob id)."""
    partial.mkdir(parents=True, exist_ok=True)
    if plan.source == "hf":
        return _fetch_hf(settings, plan, partial, _endpoint(endpoint), progress)
    if plan.source == "modelscope":
        return _fetch_modelscope(plan, partial, endpoint), {}
    return _fetch_hanlp(settings, plan, partial, target, _endpoint(endpoint), progress), {}


def _finish_download(plan: _Plan, partial: Path, target: Path, meta: dict[str, Any],
                     expected: dict[str, dict[str, Any]], progress: bool) -> dict[str, Any]:
    """Check the partial folder against the hub's listing and the role's needs, then move it into place."""
    if expected:
        _drop_unlisted(partial, expected)
    files = _hash_folder(partial, progress, f"Checking {plan.name}", skip=LEFTOVERS, git=bool(expected))
    bad = _mismatches(expected, files)
    if bad:
        for name in bad:  # drop them so a re-run fetches them again
            (partial / name).unlink(missing_ok=True)
            (partial / ".cache" / "huggingface" / "download" / f"{name}.metadata").unlink(missing_ok=True)
        raise ModelDownloadError(f"{', '.join(bad[:3])} of {plan.repo_id} arrived damaged (checksum or size differs "
                                 f"from the hub's); run the same command again to fetch {'it' if len(bad) == 1 else 'them'} "
                                 f"again.")
    _remove_leftovers(partial)
    try:
        check_model_folder(plan.role, partial)
    except ModelUnavailableError:
        missing = ", ".join(missing_files(plan.role, partial)) or "the files this role needs"
        shutil.rmtree(partial, ignore_errors=True)
        raise ModelDownloadError(f"{plan.repo_id} does not contain what the {plan.role} role needs ({missing}); "
                                 f"set {ROLE_SETTING[plan.role]} to a {plan.role} model.") from None
    # HanLP's config already names the final folder, checked once it is in place
    for check in (_check_weights,) if plan.role == "hanlp" else (_check_config, _check_weights):
        ok, note = check(plan.role, partial)
        if not ok:
            shutil.rmtree(partial, ignore_errors=True)
            raise ModelDownloadError(f"{plan.repo_id} arrived whole but is not a usable {plan.role} model ({note}); "
                                     f"set {ROLE_SETTING[plan.role]} to another model.")
    for entry in files.values():
        entry.pop("git", None)
    manifest = {"format": FORMAT, "tool": "askany", "role": plan.role, "repo_id": plan.repo_id,
                "created": _now(), **meta, "files": files}
    _write_json(partial / MANIFEST, manifest)
    _move_into_place(partial, target)
    log.info("The %s model is ready in %s", plan.role, target)
    return manifest


def _drop_unlisted(folder: Path, expected: dict[str, dict[str, Any]]) -> None:
    """Files a kept partial folder got from an older commit of the repo do not belong in the model."""
    for path in [p for p in folder.rglob("*") if p.is_file()]:
        relative = path.relative_to(folder)
        if relative.parts[0] not in LEFTOVERS and relative.as_posix() not in expected:
            path.unlink()


def _result(plan: _Plan, target: Path, manifest: dict[str, Any], status: str, seconds: float) -> DownloadResult:
    files = manifest.get("files", {})
    return DownloadResult(plan.role, plan.repo_id, str(target.resolve()), manifest.get("source", plan.source),
                          status, manifest.get("commit"), len(files), sum(f.get("size", 0) for f in files.values()),
                          round(seconds, 3))


def _looks_complete(role: str, folder: Path, manifest: dict[str, Any]) -> bool:
    """Cheap check (sizes only) that an earlier AskAny download is still whole."""
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != entry.get("size"):
            return False
    return not missing_files(role, folder)


# ====================================================================== Hugging Face

def _endpoint(endpoint: str | None) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


@contextlib.contextmanager
def _only_this_endpoint(endpoint: str) -> Iterator[None]:
    """Keep huggingface_hub's side requests on the chosen endpoint.

    huggingface_hub 2.4 fetches `{constants.ENDPOINT}/api/agent-harnesses` (fixed when
    it was imported) to build its User-Agent: with `--endpoint` or a late HF_ENDPOINT
    that would contact huggingface.co behind the user's back.
    """
    from huggingface_hub import constants

    saved = constants.ENDPOINT, constants.HUGGINGFACE_CO_URL_TEMPLATE
    constants.ENDPOINT = endpoint  # the template must agree: hf_hub_url swaps one prefix for the other
    constants.HUGGINGFACE_CO_URL_TEMPLATE = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    try:
        yield
    finally:
        constants.ENDPOINT, constants.HUGGINGFACE_CO_URL_TEMPLATE = saved


def _unreachable(endpoint: str, what: str, error: BaseException) -> HubUnreachableError:
    return HubUnreachableError(
        f"{endpoint} does not answer ({_short(error)}) while fetching {what}; check the network or proxy "
        f"(HTTPS_PROXY), set HF_ENDPOINT to a reachable mirror such as {MIRROR_EXAMPLE}, use --source modelscope, "
        f"or bring the models in a bundle made with --export-models and load it with --import-models.")


def _fetch_hf(settings: Settings, plan: _Plan, partial: Path, endpoint: str,
              progress: bool) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    from huggingface_hub import HfApi, snapshot_download

    api = HfApi(endpoint=endpoint)
    commit, listing = _hub_listing(api, plan, endpoint, settings.hub_timeout_seconds)
    ignore = _ignore_patterns(list(listing))
    expected = _filtered(listing, ignore)

    def attempt() -> None:
        with _hub_progress(progress):
            snapshot_download(plan.repo_id, revision=commit, local_dir=partial, endpoint=endpoint,
                              etag_timeout=settings.hub_timeout_seconds, ignore_patterns=ignore)
        _require_files(partial, expected)

    try:
        _retrying(attempt, f"downloading {plan.repo_id}")
    except Exception as error:
        if _is_disk_full(error) or not _is_transient(error):
            raise
        raise ModelDownloadError(f"Downloading {plan.repo_id} from {endpoint} failed after {ATTEMPTS} tries "
                                 f"({_short(error)}); run the same command again to resume (finished files are "
                                 f"kept in {partial}).") from None
    meta = {"source": "hf", "endpoint": endpoint, "revision": "main", "commit": commit}
    return meta, expected


def _hub_listing(api: Any, plan: _Plan, endpoint: str, timeout: float) -> tuple[str, dict[str, dict[str, Any]]]:
    """The commit of `main` and its file listing; the first contact, so it names an unreachable endpoint."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    setting = ROLE_SETTING[plan.role]

    def listing() -> tuple[str, dict[str, dict[str, Any]]]:
        info = api.model_info(plan.repo_id, revision="main", timeout=timeout)
        if not info.sha:
            raise ModelDownloadError(f"{endpoint} did not say which commit {plan.repo_id} is at; "
                                     f"check that HF_ENDPOINT points to a Hugging Face Hub or mirror.")
        files = {}
        for item in api.list_repo_tree(plan.repo_id, recursive=True, revision=info.sha):
            if hasattr(item, "blob_id") and hasattr(item, "size"):
                lfs = getattr(item, "lfs", None)
                files[item.path] = {"size": item.size, "git": None if lfs else item.blob_id,
                                    "sha256": lfs.sha256 if lfs else None}
        return info.sha, files

    try:
        return _retrying(listing, f"asking {endpoint} about {plan.repo_id}")
    except GatedRepoError:
        raise ModelDownloadError(f"{plan.repo_id} on {endpoint} is gated; accept its licence on the hub and set "
                                 f"HF_TOKEN, or set {setting} to another model.") from None
    except RepositoryNotFoundError:
        raise ModelDownloadError(f"{plan.repo_id} was not found on {endpoint} (or is private: set HF_TOKEN); check "
                                 f"{setting} (a hub id such as BAAI/bge-m3) or HF_ENDPOINT.") from None
    except HfHubHTTPError as error:
        if _is_transient(error):
            raise _unreachable(endpoint, plan.repo_id, error) from None
        raise ModelDownloadError(f"{endpoint} answered {error.response.status_code} for {plan.repo_id}; check that "
                                 f"HF_ENDPOINT points to a Hugging Face Hub or mirror.") from None
    except ValueError as error:  # not JSON: some other web server
        raise ModelDownloadError(f"{endpoint} does not answer like a Hugging Face Hub ({_short(error)}); "
                                 f"check HF_ENDPOINT.") from None
    except Exception as error:
        if _is_transient(error):
            raise _unreachable(endpoint, plan.repo_id, error) from None
        raise


def _ignore_patterns(files: list[str]) -> list[str]:
    """Skip other runtimes' weights; with safetensors present, skip the duplicate pickles too."""
    patterns = list(IGNORE_PATTERNS)
    if any(name.endswith(".safetensors") for name in files):
        patterns += ["pytorch_model*.bin", "*.bin.index.json", "training_args.bin"]
    return patterns


def _filtered(listing: dict[str, dict[str, Any]], ignore: list[str]) -> dict[str, dict[str, Any]]:
    from huggingface_hub.utils import filter_repo_objects

    keep = set(filter_repo_objects(list(listing), ignore_patterns=ignore))
    return {name: entry for name, entry in listing.items() if name in keep}


def _require_files(folder: Path, expected: dict[str, dict[str, Any]]) -> None:
    """snapshot_download returns an incomplete local_dir when the hub drops out: catch that."""
    short = [name for name, entry in expected.items()
             if not (folder / name).is_file() or (folder / name).stat().st_size != entry["size"]]
    if short:
        raise _Transient(f"{len(short)} file(s) incomplete, for example {short[0]}")


@contextlib.contextmanager
def _hub_progress(enabled: bool) -> Iterator[None]:
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    if not enabled and not was_disabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not enabled and not was_disabled:
            enable_progress_bars()


# ====================================================================== ModelScope

def _fetch_modelscope(plan: _Plan, partial: Path, endpoint: str | None) -> dict[str, Any]:
    try:
        from modelscope import snapshot_download as ms_snapshot_download
    except ImportError:
        raise ModelScopeMissingError("The ModelScope source needs the modelscope package; install it with "
                                     "pip install 'askany[modelscope]' or use --source hf.") from None
    import inspect

    domain = endpoint.removeprefix("https://").removeprefix("http://").rstrip("/") if endpoint \
        else os.environ.get("MODELSCOPE_DOMAIN", "www.modelscope.cn")
    accepted = inspect.signature(ms_snapshot_download).parameters
    options: dict[str, Any] = {"local_dir": str(partial)}
    if "ignore_patterns" in accepted:
        options["ignore_patterns"] = IGNORE_PATTERNS
    saved = os.environ.get("MODELSCOPE_DOMAIN")
    os.environ["MODELSCOPE_DOMAIN"] = domain  # how modelscope is pointed at a mirror
    try:
        _retrying(lambda: ms_snapshot_download(plan.repo_id, **options), f"downloading {plan.repo_id} from ModelScope")
    except Exception as error:
        if _is_disk_full(error):
            raise
        raise ModelDownloadError(f"Downloading {plan.repo_id} from ModelScope ({domain}) failed ({_short(error)}); "
                                 f"check the network or {ROLE_SETTING[plan.role]}, then run the same command "
                                 f"again.") from None
    finally:
        if saved is None:
            os.environ.pop("MODELSCOPE_DOMAIN", None)
        else:
            os.environ["MODELSCOPE_DOMAIN"] = saved
    return {"source": "modelscope", "endpoint": domain, "revision": "master", "commit": None}


# ====================================================================== HanLP

def _hanlp_base() -> str:
    return os.environ.get("HANLP_URL", DEFAULT_HANLP_URL).rstrip("/") + "/"


def _rebase(official_url: str) -> str:
    """HanLP's URLs are built from HANLP_URL at import; rebuild them from the current one."""
    from hanlp_common.constant import HANLP_URL as base_at_import

    if official_url.startswith(base_at_import):
        return _hanlp_base() + official_url[len(base_at_import):]
    return official_url


def _hanlp_archive_url(name: str) -> str:
    """HANLP_TOK_MODEL as a URL or hanlp.pretrained key; else ASKANY_HANLP_TOK_URL; else COARSE_ELECTRA_SMALL_ZH."""
    if name.startswith(("http://", "https://")):
        return name
    import hanlp.pretrained

    if name and name in hanlp.pretrained.ALL:
        return _rebase(hanlp.pretrained.ALL[name])
    override = os.environ.get("ASKANY_HANLP_TOK_URL")
    if override:
        return override
    from hanlp.pretrained.tok import COARSE_ELECTRA_SMALL_ZH

    return _rebase(COARSE_ELECTRA_SMALL_ZH)


def _archive_stem(url: str) -> str:
    base = url.split("#")[0].rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".zip", ".tar.gz", ".tgz"):
        base = base.removesuffix(suffix)
    return base


def _fetch_hanlp(settings: Settings, plan: _Plan, partial: Path, target: Path, endpoint: str,
                 progress: bool) -> dict[str, Any]:
    """Tokenizer archive plus the transformer files it names, so hanlp.load works offline."""
    downloads = partial / DOWNLOADS_DIR
    with _http_client(settings) as client:
        archive = _fetch_url(client, plan.url or "", downloads / _basename(plan.url or ""), progress)
        _extract_zip(archive, partial, plan.url or "")
        config_path = partial / "config.json"
        config = _read_json(config_path)
        if not isinstance(config, dict) or "classpath" not in config:
            raise ModelDownloadError(f"{plan.url} is not a HanLP model (no config.json with a classpath); "
                                     f"set HANLP_TOK_MODEL or ASKANY_HANLP_TOK_URL to a HanLP tokenizer archive.")
        meta: dict[str, Any] = {"source": "hanlp", "endpoint": _hanlp_base(), "url": plan.url,
                                "revision": None, "commit": None}
        transformer = config.get("transformer")
        if isinstance(transformer, str) and transformer:
            meta["transformer"] = transformer
            meta["transformer_source"] = _fetch_transformer(client, transformer, partial, endpoint, progress)
            config["transformer"] = str(target.resolve() / "transformer")
            _write_json(config_path, config)
    return meta


def _fetch_transformer(client: Any, name: str, partial: Path, endpoint: str, progress: bool) -> str:
    """Put the transformer's config and tokenizer in `partial/transformer`; return where they came from."""
    folder = partial / "transformer"
    if (folder / "config.json").is_file():
        return "included in the archive"
    from hanlp.layers.transformers.resource import tokenizer_mirrors

    if name in tokenizer_mirrors:
        source = _rebase(tokenizer_mirrors[name])
        archive = _fetch_url(client, source, partial / DOWNLOADS_DIR / _basename(source), progress)
        _extract_zip(archive, folder, source)
    elif Path(name).is_absolute():
        raise ModelDownloadError(f"The HanLP model names its transformer as the folder {name}, which is not in the "
                                 f"archive; rebuild the archive with its transformer folder included.")
    else:
        source = f"{endpoint}/{name}"
        _fetch_hub_transformer(name, folder, endpoint)
    if not (folder / "config.json").is_file():
        raise ModelDownloadError(f"The transformer {name} that the HanLP model needs has no config.json at "
                                 f"{source}; set HANLP_TOK_MODEL to another HanLP tokenizer.")
    return source


def _fetch_hub_transformer(name: str, folder: Path, endpoint: str) -> None:
    """A transformer HanLP has no mirror for: its config and tokenizer from the hub (weights are in HanLP's model)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        _retrying(lambda: snapshot_download(name, local_dir=folder, endpoint=endpoint,
                                            allow_patterns=TRANSFORMER_PATTERNS), f"downloading {name}")
    except RepositoryNotFoundError:
        raise ModelDownloadError(f"The transformer {name} that the HanLP model needs was not found on {endpoint}; "
                                 f"set HF_ENDPOINT, or HANLP_TOK_MODEL to another HanLP tokenizer.") from None
    except Exception as error:
        if _is_transient(error):
            raise _unreachable(endpoint, name, error) from None
        raise
    shutil.rmtree(folder / ".cache", ignore_errors=True)


@contextlib.contextmanager
def _http_client(settings: Settings) -> Iterator[Any]:
    """httpx with trust_env (the default): HTTP_PROXY/HTTPS_PROXY/NO_PROXY apply."""
    import httpx

    timeout = httpx.Timeout(max(30.0, settings.hub_timeout_seconds * 6), connect=settings.hub_timeout_seconds)
    with httpx.Client(follow_redirects=True, timeout=timeout, trust_env=True) as client:
        yield client


def _basename(url: str) -> str:
    return url.split("#")[0].split("?")[0].rstrip("/").rsplit("/", 1)[-1] or "download"


def _fetch_url(client: Any, url: str, dest: Path, progress: bool) -> Path:
    """GET `url` into `dest`, resuming `dest.part` with a Range request; kept across runs."""
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        _retrying(lambda: _fetch_once(client, url, part, progress), f"downloading {url}")
    except Exception as error:
        if _is_disk_full(error) or not _is_transient(error):
            raise
        host = url.split("/")[2] if "://" in url else url
        raise HubUnreachableError(
            f"{host} did not deliver {_basename(url)} after {ATTEMPTS} tries ({_short(error)}); check the network or "
            f"proxy (HTTPS_PROXY), set HANLP_URL to a reachable HanLP mirror, or bring the models in a bundle "
            f"made with --export-models; run the same command again to resume.") from None
    part.replace(dest)
    return dest


def _fetch_once(client: Any, url: str, part: Path, progress: bool) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 416 and have:
            total = response.headers.get("Content-Range", "").rpartition("/")[2]
            if total.isdigit() and int(total) == have:
                return  # already complete
            part.unlink()
            raise _Transient("the partial file no longer matches the server's")
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise _Transient(f"{url} answered {response.status_code}")
        if response.status_code >= 400:
            raise ModelDownloadError(f"{url} answered {response.status_code}; check HANLP_URL, HANLP_TOK_MODEL "
                                     f"or ASKANY_HANLP_TOK_URL.")
        if response.status_code != 206:
            have = 0  # the server ignored the Range: start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        received = have
        with part.open("ab" if have else "wb") as out, \
                _bar(total, _basename(url), progress, initial=have) as bar:
            for chunk in response.iter_bytes():  # as it arrives: a cut-off keeps what came
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise _Transient(f"the connection closed after {received} of {total} bytes")


def _extract_zip(archive: Path, dest: Path, url: str) -> None:
    """Unpack `archive` into `dest` (a single top folder is stripped, as HanLP does); refuse unsafe names."""
    try:
        with zipfile.ZipFile(archive) as zf:
            broken = zf.testzip()
            if broken:
                raise zipfile.BadZipFile(f"{broken} is damaged")
            names = [n for n in zf.namelist() if not n.endswith("/")]
            roots = {n.split("/", 1)[0] for n in names}
            strip = len(roots) == 1 and all("/" in n for n in names)
            for name in names:
                relative = name.split("/", 1)[1] if strip else name
                path = _safe_join(dest, relative, archive)
                path.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(name) as src, path.open("wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
    except zipfile.BadZipFile as error:
        archive.unlink(missing_ok=True)  # a re-run fetches it again
        raise ModelDownloadError(f"The archive from {url} is damaged ({error}); run the same command again to "
                                 f"fetch it again.") from None


def _safe_join(root: Path, relative: str, source: Path) -> Path:
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or ".." in parts or "\\" in relative:
        raise BundleError(f"{source} contains an unsafe file name ({relative!r}); it was not made by AskAny "
                          f"or was tampered with, so nothing was changed.")
    return root.joinpath(*parts)


# ====================================================================== verification

def _verify_role(settings: Settings, role: str, progress: bool) -> VerifyRow:
    name = role_name(settings, role)
    setting = f"{ROLE_SETTING[role]}={name}"
    folder = _locate(settings, role)
    unused = _why_unused(settings, role)
    if folder is None or (isinstance(folder, VerifyRow) and unused):
        return VerifyRow(role, setting, None, ok=True, files=unused or "not configured: jieba is used",
                         files_ok=True, config_ok=True, weights_ok=True)
    if isinstance(folder, VerifyRow):
        return folder
    row = VerifyRow(role, setting, str(folder.resolve()))
    missing = missing_files(role, folder)
    row.files_ok = not missing
    row.files = "all present" if not missing else "missing " + ", ".join(missing)
    row.config_ok, row.config = _check_config(role, folder)
    row.weights_ok, row.weights = _check_weights(role, folder)
    row.checksums_ok, row.checksums = _check_checksums(folder, progress)
    row.ok = row.files_ok and row.config_ok and row.weights_ok and row.checksums_ok is not False
    if not row.ok:
        first = next(note for ok, note in ((row.files_ok, row.files), (row.config_ok, row.config),
                                           (row.weights_ok, row.weights), (row.checksums_ok, row.checksums))
                     if ok is False)
        row.problem = (f"The {role} model in {folder} fails its check ({first}); download it again with "
                       f"python -m askany.main --download-models {role}.")
    return row


def _why_unused(settings: Settings, role: str) -> str | None:
    """Why AskAny would not load this role with these settings (the same rule as --check)."""
    if role == "embedding" and not settings.embedding_enabled:
        return "not used (EMBEDDING_ENABLED=false)"
    if role == "reranker" and not settings.reranker_enabled:
        return "not used (RERANKER_ENABLED=false)"
    if role == "llm" and settings.llm_backend != "transformers":
        return f"not used (LLM_BACKEND={settings.llm_backend})"
    return None


def _locate(settings: Settings, role: str) -> Path | VerifyRow | None:
    """The folder this role would load, found without network; a failed row when there is none."""
    name = role_name(settings, role)
    if role == "hanlp" and not name:
        return _find_by_role(settings.models_dir, "hanlp")
    local_only = settings.model_copy(update={f"{role}_local_files_only": True}) if role != "hanlp" else settings
    try:
        return resolve_model(local_only, role).path
    except ModelUnavailableError as error:
        return VerifyRow(role, f"{ROLE_SETTING[role]}={name}", None, files="not found", problem=str(error))


def _find_by_role(models_dir: Path, role: str) -> Path | None:
    for folder in _model_folders(models_dir):
        manifest = read_manifest(folder)
        if manifest and manifest.get("role") == role:
            return folder
    return None


def _check_config(role: str, folder: Path) -> tuple[bool, str]:
    if not (folder / "config.json").is_file():
        return False, "no config.json"
    if not missing_files(role, folder):
        try:
            check_model_folder(role, folder)  # JSON, and the right kind of model for the role
        except ModelUnavailableError as error:
            return False, str(error)
    if role == "hanlp":
        return _check_hanlp_config(folder)
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as error:  # whatever transformers raises for a config it cannot read
        return False, f"config.json does not load ({_short(error)})"
    return True, f"loads ({config.model_type})"


def _check_hanlp_config(folder: Path) -> tuple[bool, str]:
    config = _read_json(folder / "config.json")
    transformer = config.get("transformer") if isinstance(config, dict) else None
    if not isinstance(transformer, str) or not transformer:
        return True, "loads (no transformer)"
    if not Path(transformer).is_absolute():
        return False, f"names the transformer {transformer}, which HanLP would download at load time"
    if not (Path(transformer) / "config.json").is_file():
        return False, f"its transformer folder {transformer} is missing (moved?); import or download it again"
    return True, "loads (transformer in place)"


def _check_weights(role: str, folder: Path) -> tuple[bool, str]:
    names = ("model.pt", "model.safetensors", "pytorch_model.bin") if role == "hanlp" else WEIGHT_FILES
    found = [folder / name for name in names if (folder / name).is_file()]
    if not found:
        return False, "no weights file"
    path = found[0]
    shards = [path]
    if path.name.endswith(".index.json"):
        index = _read_json(path)
        weight_map = index.get("weight_map", {}) if isinstance(index, dict) else {}
        shards = [folder / shard for shard in sorted(set(weight_map.values()))]
        absent = [p.name for p in shards if not p.is_file()]
        if not shards or absent:
            return False, f"{path.name} lists missing shards: {', '.join(absent[:3]) or 'none listed'}"
    total = 0
    for shard in shards:
        problem = _weights_problem(shard)
        if problem:
            return False, f"{shard.name} {problem}"
        total += shard.stat().st_size
    return True, f"{path.name}, {human_size(total)}"


def _weights_problem(path: Path) -> str | None:
    """Why a weights file cannot be whole, from its own structure (no torch needed)."""
    size = path.stat().st_size
    if size == 0:
        return "is empty"
    if path.suffix == ".safetensors":
        return _safetensors_problem(path, size)
    if zipfile.is_zipfile(path):  # torch.save's format: the central directory sits at the very end
        return None
    if path.suffix in (".bin", ".pt") and size < 1024:
        return f"is only {size} bytes"
    return None


_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}


def _safetensors_problem(path: Path, size: int) -> str | None:
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return "is truncated"
        header_len = struct.unpack("<Q", head)[0]
        if 8 + header_len > size:
            return "is truncated (its header is cut off)"
        try:
            header = json.loads(f.read(header_len))
        except ValueError:
            return "has a damaged header"
    end = 0
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        begin, stop = tensor["data_offsets"]
        width = _DTYPE_BYTES.get(tensor.get("dtype", ""))
        if width is not None and stop - begin != math.prod(tensor.get("shape", [])) * width:
            return f"has a tensor ({name}) whose size does not match its shape"
        end = max(end, stop)
    if end == 0:
        return "holds no tensors"
    if 8 + header_len + end != size:
        return f"is {human_size(size)} but its header describes {human_size(8 + header_len + end)} (truncated or padded)"
    return None


def _check_checksums(folder: Path, progress: bool) -> tuple[bool | None, str]:
    manifest = read_manifest(folder)
    if manifest is None:
        return None, "not recorded (not downloaded by AskAny)"
    recorded = manifest["files"]
    absent = [name for name in recorded if not (folder / name).is_file()]
    if absent:
        return False, f"missing {', '.join(absent[:3])}"
    actual = _hash_files(folder, list(recorded), progress, f"Verifying {folder.name}")
    differ = [name for name, entry in recorded.items()
              if actual[name]["sha256"] != entry.get("sha256") or actual[name]["size"] != entry.get("size")]
    if differ:
        return False, f"{', '.join(differ[:3])} changed since the download (checksum differs)"
    return True, f"match ({len(recorded)} files)"


# ====================================================================== Hugging Face cache

def _hf_cache_dir(cache_dir: Path | str | None) -> Path:
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _cached_snapshot(cache: Path, repo_id: str) -> Path | None:
    """`models--ORG--NAME/snapshots/<hash>` for refs/main, else the newest snapshot."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        chosen = snapshots / ref.read_text(encoding="utf-8").strip()
        if chosen.is_dir():
            return chosen
    candidates = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


def _role_for_repo(settings: Settings, repo_id: str) -> str | None:
    for role in HUB_ROLES:
        if role_name(settings, role).lower() == repo_id.lower():
            return role
    return None


def _setting_for(settings: Settings, repo_id: str) -> str:
    role = _role_for_repo(settings, repo_id)
    return ROLE_SETTING[role] if role else "the model setting"


def _import_snapshot(settings: Settings, role: str | None, repo_id: str, snapshot: Path, cache: Path,
                     progress: bool) -> DownloadResult:
    """Copy the snapshot's files (following the cache's symlinks) into place through a staging folder."""
    started = time.monotonic()
    name = _folder_name(repo_id)
    target = settings.models_dir / name
    staging = settings.models_dir / f".import-{name}-{uuid.uuid4().hex[:8]}"
    try:
        _check_snapshot_complete(repo_id, snapshot, cache)
        _copy_real_files(snapshot, staging, repo_id)
        if role:
            try:
                check_model_folder(role, staging)
            except ModelUnavailableError:
                raise NotInCacheError(f"The cached {repo_id} lacks what the {role} role needs "
                                      f"({', '.join(missing_files(role, staging))}); download it with "
                                      f"python -m askany.main --download-models {role}.") from None
        files = _hash_folder(staging, progress, f"Checking {name}")
        manifest = {"format": FORMAT, "tool": "askany", "role": role, "repo_id": repo_id, "created": _now(),
                    "source": "hf-cache", "endpoint": None, "revision": None, "commit": snapshot.name,
                    "files": files}
        _write_json(staging / MANIFEST, manifest)
        _move_into_place(staging, target)
    except OSError as error:
        if _is_disk_full(error):
            raise DiskFullError(f"The disk holding {settings.models_dir} is full while copying {repo_id}; free "
                                f"some space and run the import again.") from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return DownloadResult(role or "", repo_id, str(target.resolve()), "hf-cache", "imported", snapshot.name,
                          len(files), sum(f["size"] for f in files.values()), round(time.monotonic() - started, 3))


def _check_snapshot_complete(repo_id: str, snapshot: Path, cache: Path) -> None:
    """When the hub recorded the file listing, every listed file must be in the snapshot."""
    try:
        from huggingface_hub import get_cached_repo_tree

        listing = get_cached_repo_tree(repo_id, revision=snapshot.name, cache_dir=cache)
    except Exception:  # older hub versions or caches keep no listing: rely on the role check
        return
    absent = [f.path for f in listing if not (snapshot / f.path).is_file()]
    if absent:
        raise NotInCacheError(f"The cached {repo_id} is incomplete (missing {', '.join(absent[:3])}); download it "
                              f"with python -m askany.main --download-models instead.")


def _copy_real_files(source: Path, dest: Path, repo_id: str) -> None:
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_dir():
            continue
        if not path.exists():  # a symlink whose blob is gone
            raise NotInCacheError(f"The cached {repo_id} is incomplete ({relative.as_posix()} has no data); "
                                  f"download it with python -m askany.main --download-models instead.")
        (dest / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / relative)  # follows the symlink: a real file


# ====================================================================== bundles

def _model_folders(models_dir: Path) -> list[Path]:
    if not models_dir.is_dir():
        return []
    return sorted(p for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _export_folder(tar: tarfile.TarFile, folder: Path, bar: Any) -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        info = tarfile.TarInfo(f"{folder.name}/{relative}")
        info.size = path.stat().st_size
        info.mtime = int(path.stat().st_mtime)
        info.mode = 0o644
        with path.open("rb") as raw:
            reader = _HashingReader(raw, bar)
            tar.addfile(info, reader)
        files[relative] = {"sha256": reader.sha256.hexdigest(), "size": info.size}
    return files


def _refuse_if_damaged(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    manifest = read_manifest(folder)
    if manifest is None:
        return
    differ = [name for name, entry in manifest["files"].items()
              if files.get(name, {}).get("sha256") != entry.get("sha256")]
    if differ:
        raise BundleError(f"{folder} no longer matches its recorded checksums ({', '.join(differ[:3])}); run "
                          f"--verify-models and download it again before exporting.")


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


class _HashingReader:
    """A file wrapper that hashes (and counts progress for) what tarfile reads through it."""

    def __init__(self, raw: Any, bar: Any):
        self.raw, self.bar, self.sha256 = raw, bar, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.sha256.update(data)
        self.bar.update(len(data))
        return data


@contextlib.contextmanager
def _open_bundle(tar_path: Path) -> Iterator[tuple[tarfile.TarFile, list[tarfile.TarInfo], dict[str, Any]]]:
    """Open the tar and its manifest, refusing truncated, foreign or malformed bundles with one sentence."""
    damaged = (f"{tar_path} is not a complete AskAny model bundle (truncated or not a tar file); copy it "
               f"again from the machine that ran --export-models.")
    try:
        tar = tarfile.open(tar_path, "r:")
        members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError):
        raise BundleError(damaged) from None
    try:
        by_name = {m.name: m for m in members}
        entry = by_name.get(BUNDLE_MANIFEST)
        if entry is None:
            raise BundleError(f"{tar_path} has no {BUNDLE_MANIFEST}: it is truncated or was not made by "
                              f"--export-models; copy or export it again.")
        try:
            bundle = json.loads(tar.extractfile(entry).read())  # type: ignore[union-attr]
            models = bundle["models"]
            assert isinstance(models, dict) and all(isinstance(m.get("files"), dict) for m in models.values())
        except (ValueError, KeyError, AssertionError, AttributeError, tarfile.TarError, OSError, EOFError):
            raise BundleError(f"{tar_path} has a damaged {BUNDLE_MANIFEST}; export it again.") from None
        _check_members(tar_path, members, models)
        yield tar, members, bundle
    finally:
        tar.close()


def _check_members(tar_path: Path, members: list[tarfile.TarInfo], models: dict[str, Any]) -> None:
    """Every member must be a plain file the manifest lists, and every listed file must be there."""
    tampered = f"{tar_path} does not match its checksum manifest"
    seen: set[str] = set()
    for member in members:
        if member.name == BUNDLE_MANIFEST or member.isdir():
            continue
        name, _, relative = member.name.partition("/")
        _safe_join(Path("."), member.name, tar_path)
        if not member.isfile() or name not in models or relative not in models[name]["files"]:
            raise BundleError(f"{tampered} ({member.name} is not listed): it was damaged or tampered with, "
                              f"so nothing was changed.")
        if member.size != models[name]["files"][relative].get("size") or member.name in seen:
            raise BundleError(f"{tampered} ({member.name} has the wrong size): it was damaged or tampered with, "
                              f"so nothing was changed.")
        seen.add(member.name)
    for name, entry in models.items():
        if name.startswith(".") or "/" in name or not name:
            raise BundleError(f"{tampered} (bad folder name {name!r}); nothing was changed.")
        absent = [f"{name}/{rel}" for rel in entry["files"] if f"{name}/{rel}" not in seen]
        if absent:
            raise BundleError(f"{tar_path} is missing {', '.join(absent[:3])}: it is truncated or was tampered "
                              f"with, so nothing was changed.")


def _stage_bundle(models_dir: Path, tar_path: Path, tar: tarfile.TarFile, members: list[tarfile.TarInfo],
                  models: dict[str, Any], progress: bool) -> dict[str, Path]:
    """Extract every model to a staging folder, hashing as it goes; remove them all on any problem."""
    staged = {name: models_dir / f".import-{name}-{uuid.uuid4().hex[:8]}" for name in models}
    total = sum(m.size for m in members if m.isfile() and m.name != BUNDLE_MANIFEST)
    try:
        with _bar(total, "Importing", progress) as bar:
            for member in members:
                if not member.isfile() or member.name == BUNDLE_MANIFEST:
                    continue
                name, _, relative = member.name.partition("/")
                digest = _extract_member(tar, member, _safe_join(staged[name], relative, tar_path), bar)
                if digest != models[name]["files"][relative].get("sha256"):
                    raise BundleError(f"{tar_path} does not match its checksum manifest ({member.name} differs): "
                                      f"it was damaged or tampered with, so nothing was changed.")
        for name, entry in models.items():
            _check_own_manifest(tar_path, name, entry)
    except BaseException as error:
        _remove_all(staged.values())
        if _is_disk_full(error):
            raise DiskFullError(f"The disk holding {models_dir} is full while importing {tar_path}; free at least "
                                f"{human_size(total)} and import again (nothing was changed).") from None
        if isinstance(error, (tarfile.TarError, EOFError)):
            raise BundleError(f"{tar_path} is truncated or damaged; copy it again (nothing was changed).") from None
        raise
    return staged


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, bar: Any) -> str:
    source = tar.extractfile(member)
    if source is None:
        raise tarfile.ReadError(f"{member.name} has no data")
    digest = hashlib.sha256()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with source, dest.open("wb") as out:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _check_own_manifest(tar_path: Path, name: str, entry: dict[str, Any]) -> None:
    """The folder's own manifest (from the original download) must agree with the bundle's list."""
    own = entry.get("manifest")
    if not own:
        return
    bundled = entry["files"]
    differ = [rel for rel, item in own.get("files", {}).items() if bundled.get(rel, {}).get("sha256") != item.get("sha256")]
    if differ:
        raise BundleError(f"{tar_path} does not match its checksum manifest ({name}/{differ[0]} differs from the "
                          f"original download): it was tampered with, so nothing was changed.")


def _prepare_import(target: Path, entry: dict[str, Any], staging: Path) -> None:
    """Point HanLP at its new place and check the role's files, before anything is moved."""
    manifest = entry.get("manifest") or {}
    role = manifest.get("role")
    if role == "hanlp":
        _repoint_hanlp(staging, target)
    if role in ROLES:
        try:
            check_model_folder(role, staging)
        except ModelUnavailableError:
            raise BundleError(f"The bundled {target.name} is not a usable {role} model (missing "
                              f"{', '.join(missing_files(role, staging)) or 'a valid config.json'}); nothing was "
                              f"changed.") from None


def _move_import(target: Path, entry: dict[str, Any], staging: Path) -> DownloadResult:
    manifest = entry.get("manifest") or {}
    _move_into_place(staging, target)
    files = entry["files"]
    return DownloadResult(manifest.get("role") or "", manifest.get("repo_id") or target.name, str(target.resolve()),
                          "bundle", "imported", manifest.get("commit"), len(files),
                          sum(f.get("size", 0) for f in files.values()))


def _repoint_hanlp(staging: Path, target: Path) -> None:
    """HanLP's config names its transformer by absolute path: point it at the new place, keep the record true."""
    config_path = staging / "config.json"
    config = _read_json(config_path)
    if not isinstance(config, dict) or not (staging / "transformer" / "config.json").is_file():
        return
    config["transformer"] = str(target.resolve() / "transformer")
    _write_json(config_path, config)
    manifest = read_manifest(staging)
    if manifest is not None and "config.json" in manifest["files"]:
        manifest["files"]["config.json"] = _hash_files(staging, ["config.json"], False, "")["config.json"]
        _write_json(staging / MANIFEST, manifest)


# ====================================================================== files and folders

def _hash_folder(folder: Path, progress: bool, desc: str, skip: tuple[str, ...] = (),
                 git: bool = False) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under `folder` except the manifest and `skip`ped top-level names."""
    names = [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != MANIFEST and p.relative_to(folder).parts[0] not in skip]
    return _hash_files(folder, names, progress, desc, git)


def _hash_files(folder: Path, names: list[str], progress: bool, desc: str,
                git: bool = False) -> dict[str, dict[str, Any]]:
    sizes = {name: (folder / name).stat().st_size for name in names}
    result: dict[str, dict[str, Any]] = {}
    with _bar(sum(sizes.values()), desc, progress and sum(sizes.values()) > 64 * CHUNK) as bar:
        for name in names:
            sha256 = hashlib.sha256()
            sha1 = hashlib.sha1(b"blob %d\0" % sizes[name]) if git else None
            with (folder / name).open("rb") as f:
                while chunk := f.read(CHUNK):
                    sha256.update(chunk)
                    if sha1 is not None:
                        sha1.update(chunk)
                    bar.update(len(chunk))
            result[name] = {"sha256": sha256.hexdigest(), "size": sizes[name]}
            if sha1 is not None:
                result[name]["git"] = sha1.hexdigest()
    return result


def _mismatches(expected: dict[str, dict[str, Any]], actual: dict[str, dict[str, Any]]) -> list[str]:
    """Files whose size, sha256 (LFS) or git blob id differs from the hub's listing."""
    bad = []
    for name, want in expected.items():
        got = actual.get(name)
        if got is None or got["size"] != want["size"] \
                or (want.get("sha256") and got["sha256"] != want["sha256"]) \
                or (want.get("git") and got.get("git") and got["git"] != want["git"]):
            bad.append(name)
    return bad


def _remove_leftovers(folder: Path) -> None:
    for name in LEFTOVERS:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename `staging` to `target`; an earlier copy (already checked to be ours) is swapped out whole."""
    if target.exists():
        old = target.with_name(f".old-{target.name}-{uuid.uuid4().hex[:8]}")
        target.rename(old)
        try:
            staging.rename(target)
        except OSError:
            old.rename(target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(target)


def _remove_all(folders: Any) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: Any) -> None:
    _atomic_write(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


# ====================================================================== retries and errors

T = TypeVar("T")


def _retrying(step: Callable[[], T], what: str) -> T:
    """Run `step`, retrying transient failures up to ATTEMPTS times with exponential backoff."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return step()
        except Exception as error:
            if attempt == ATTEMPTS or not _is_transient(error) or _is_disk_full(error):
                raise
            delay = BACKOFF_SECONDS * 2 ** (attempt - 1)
            log.warning("%s failed (%s); trying again in %.1fs (%d of %d)", what, _short(error), delay,
                        attempt + 1, ATTEMPTS)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level error classes of whichever HTTP stacks are installed (hub 2.x: httpx2)."""
    classes: list[type[BaseException]] = [_Transient, TimeoutError, ConnectionError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                         ("requests", "ConnectionError"), ("requests", "Timeout"),
                         ("huggingface_hub.errors", "LocalEntryNotFoundError")):
        with contextlib.suppress(ImportError, AttributeError):
            classes.append(getattr(__import__(module, fromlist=[name]), name))
    return tuple(classes)


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, _transport_errors()):
        return True
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if status in (408, 429, 500, 502, 503, 504):
        return True
    return isinstance(error, OSError) and "Consistency check failed" in str(error)


def _is_disk_full(error: BaseException | None) -> bool:
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text[:160]}" if text else type(error).__name__


# ====================================================================== small helpers

@contextlib.contextmanager
def _bar(total: int | None, desc: str, enabled: bool, initial: int = 0) -> Iterator[Any]:
    from tqdm import tqdm

    with tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
              disable=not enabled, file=sys.stderr, leave=False) as bar:
        yield bar


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _env_key(line: str) -> str | None:
    stripped = line.strip()
    if not stripped or stripped.startswith("#") or "=" not in stripped:
        return None
    return stripped.removeprefix("export ").split("=", 1)[0].strip()


def _env_value(value: str) -> str:
    if any(c in value for c in " \t#'\"\\$"):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value
