"""`--export-models` / `--import-models`: carry MODELS_DIR to a machine without network in one tar.

The bundle holds every model folder plus `askany-bundle.json` (written last): each
file's sha256 and size, and each folder's own manifest. An import first checks the
member list against it (plain files it lists, nothing else: no links, devices or
unsafe names), then extracts to hidden staging folders through tarfile's `data`
extraction filter, checks every file's sha256, and renames the folders into place
only when the whole bundle matched, so a damaged or tampered bundle changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from askany.core.config import Settings
from askany.core.errors import ModelUnavailableError
from askany.models.files import (
    CHUNK,
    FORMAT,
    MANIFEST,
    BundleError,
    DiskFullError,
    DownloadResult,
    ModelManagerError,
    changed_files,
    check_target,
    disk_full_means,
    hash_files,
    human_size,
    is_disk_full,
    model_folders,
    models_dir_lock,
    move_into_place,
    now,
    progress_bar,
    read_manifest,
    remove_all,
    safe_join,
    staging_folder,
    unsafe_name,
    with_models_dir,
    write_json,
)
from askany.models.kinds import Kind, repoint_hanlp
from askany.models.roles import role_named

BUNDLE_MANIFEST = "askany-bundle.json"


@dataclass
class ExportResult:
    path: str
    models: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0


# ====================================================================== export

def export_models(settings: Settings, tar_path: Path | str, models_dir: Path | str | None = None,
                  progress: bool = True) -> ExportResult:
    """Write every model folder of MODELS_DIR into one tar with a checksum manifest (written last).

    A folder that no longer matches its own recorded checksums is refused: a
    damaged model must not travel to a machine that cannot download it again.
    """
    settings = with_models_dir(settings, models_dir)
    tar_path = Path(tar_path)
    folders = model_folders(settings.models_dir)
    if not folders:
        raise ModelManagerError(f"There are no model folders in {settings.models_dir} to export; "
                                f"run python -m askany.main --download-models first.")
    if not tar_path.parent.is_dir():
        raise ModelManagerError(f"The folder {tar_path.parent} for the bundle does not exist; create it first.")
    started = time.monotonic()
    partial = tar_path.with_name(tar_path.name + ".partial")
    result = ExportResult(str(tar_path.resolve()))
    total = sum(p.stat().st_size for folder in folders for p in folder.rglob("*") if p.is_file())
    try:
        with disk_full_means(f"The disk holding {tar_path.parent} is full (the bundle needs about "
                             f"{human_size(total)}); free some space or write it elsewhere."):
            with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar, \
                    progress_bar(total, "Exporting", progress) as bar:
                bundle: dict[str, Any] = {"format": FORMAT, "created": now(), "models": {}}
                for folder in folders:
                    files = _export_folder(tar, folder, bar)
                    _refuse_if_damaged(folder, files)
                    bundle["models"][folder.name] = {"manifest": read_manifest(folder), "files": files}
                    result.models.append(folder.name)
                    result.files += len(files)
                    result.bytes += sum(f["size"] for f in files.values())
                _add_bytes(tar, BUNDLE_MANIFEST, json.dumps(bundle, ensure_ascii=False, indent=2).encode())
            partial.replace(tar_path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    result.seconds = round(time.monotonic() - started, 3)
    return result


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
    differ = changed_files(manifest["files"], files)
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


# ====================================================================== import

def import_models(settings: Settings, tar_path: Path | str, models_dir: Path | str | None = None,
                  progress: bool = True) -> list[DownloadResult]:
    """Unpack a bundle from `export_models` into MODELS_DIR, all checksums verified first.

    Each folder is extracted to a hidden staging folder and renamed into place only
    after every file of the bundle matched; on any problem all staging folders are
    removed, so nothing half-copied is left and existing folders are untouched.
    """
    settings = with_models_dir(settings, models_dir)
    tar_path = Path(tar_path)
    started = time.monotonic()
    if not tar_path.is_file():
        raise BundleError(f"The bundle {tar_path} does not exist; pass the .tar made by --export-models.")
    with _open_bundle(tar_path) as (tar, members, bundle):
        models = bundle["models"]
        for name, entry in models.items():
            repo_id = (entry.get("manifest") or {}).get("repo_id")
            role = role_named((entry.get("manifest") or {}).get("role"))
            check_target(repo_id, settings.models_dir / name, role.setting if role else "the model setting")
        settings.models_dir.mkdir(parents=True, exist_ok=True)
        with models_dir_lock(settings.models_dir):
            staged = _stage_bundle(settings.models_dir, tar_path, tar, members, models, progress)
            try:
                for name, staging in staged.items():
                    _prepare_import(settings.models_dir / name, models[name], staging)
                results = [_move_import(settings.models_dir / name, models[name], staging)
                           for name, staging in staged.items()]
            finally:
                remove_all(staged.values())
    seconds = round(time.monotonic() - started, 3)
    for result in results:
        result.seconds = seconds
    return results


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
        safe_join(Path("."), member.name, tar_path)
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
    """Extract every model to a staging folder and check each file's sha256; remove them all on any problem."""
    staged = {name: staging_folder(models_dir, name) for name in models}
    total = sum(m.size for m in members if m.isfile() and m.name != BUNDLE_MANIFEST)
    try:
        with progress_bar(total, "Importing", progress) as bar:
            for member in members:
                if not member.isfile() or member.name == BUNDLE_MANIFEST:
                    continue
                name, _, relative = member.name.partition("/")
                digest = _extract_member(tar, tar_path, member, staged[name], relative, bar)
                if digest != models[name]["files"][relative].get("sha256"):
                    raise BundleError(f"{tar_path} does not match its checksum manifest ({member.name} differs): "
                                      f"it was damaged or tampered with, so nothing was changed.")
        for name, entry in models.items():
            _check_own_manifest(tar_path, name, entry)
    except BaseException as error:
        remove_all(staged.values())
        if is_disk_full(error):
            raise DiskFullError(f"The disk holding {models_dir} is full while importing {tar_path}; free at least "
                                f"{human_size(total)} and import again (nothing was changed).") from None
        if isinstance(error, (tarfile.TarError, EOFError)):
            raise BundleError(f"{tar_path} is truncated or damaged; copy it again (nothing was changed).") from None
        raise
    return staged


def _extract_member(tar: tarfile.TarFile, tar_path: Path, member: tarfile.TarInfo, staging: Path, relative: str,
                    bar: Any) -> str:
    """Extract one listed file as `staging/relative` through tarfile's `data` filter; return its sha256.

    `_check_members` already refused anything but plain, safely named files; the filter is
    the standard library's own guard on top (no links, devices, absolute or escaping paths,
    no setuid bits, no owner changes when run as root).
    """
    dest = safe_join(staging, relative, tar_path)
    try:
        tar.extract(member.replace(name=relative, deep=False), staging, filter="data")
    except tarfile.FilterError:
        raise unsafe_name(tar_path, member.name) from None
    digest = hashlib.sha256()
    with dest.open("rb") as extracted:
        while chunk := extracted.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _check_own_manifest(tar_path: Path, name: str, entry: dict[str, Any]) -> None:
    """The folder's own manifest (from the original download) must agree with the bundle's list."""
    own = entry.get("manifest")
    if not own:
        return
    differ = changed_files(own.get("files", {}), entry["files"])
    if differ:
        raise BundleError(f"{tar_path} does not match its checksum manifest ({name}/{differ[0]} differs from the "
                          f"original download): it was tampered with, so nothing was changed.")


def _prepare_import(target: Path, entry: dict[str, Any], staging: Path) -> None:
    """Point HanLP at its new place and check the role's files, before anything is moved."""
    role = role_named((entry.get("manifest") or {}).get("role"))
    if role is None:  # a folder AskAny did not download: nothing recorded to check it against
        return
    if role.kind is Kind.HANLP:
        _repoint_hanlp(staging, target)
    try:
        role.check_folder(staging)
    except ModelUnavailableError:
        raise BundleError(f"The bundled {target.name} is not a usable {role.name} model (missing "
                          f"{', '.join(role.missing_files(staging)) or 'a valid config.json'}); nothing was "
                          f"changed.") from None


def _move_import(target: Path, entry: dict[str, Any], staging: Path) -> DownloadResult:
    manifest = entry.get("manifest") or {}
    move_into_place(staging, target)
    return DownloadResult.placed(manifest.get("role") or "", manifest.get("repo_id") or target.name, target,
                                 "bundle", "imported", manifest.get("commit"), entry["files"])


def _repoint_hanlp(staging: Path, target: Path) -> None:
    """HanLP's config names its transformer by absolute path: point it at the new place, keep the record true."""
    if not repoint_hanlp(staging, target):
        return
    manifest = read_manifest(staging)
    if manifest is not None and "config.json" in manifest["files"]:
        manifest["files"]["config.json"] = hash_files(staging, ["config.json"], False, "")["config.json"]
        write_json(staging / MANIFEST, manifest)
