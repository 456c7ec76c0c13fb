"""Model folders on disk: naming, manifests, checksums, safe replacement, locking and the shared errors.

Every role (see `askany.models.registry.ROLES`) ends up as a plain folder of real files in
`MODELS_DIR/<name>` (`name` is the last part of the repo id, the same rule
`askany.models.registry.resolve_model` looks up), with `askany-manifest.json` recording the
sha256 and size of every file, where it came from and which commit.

A folder is built in a hidden sibling (`.partial-<name>` for downloads,
`.import-<name>-<random>` for imports) and renamed into place only once it passed
its checks, so an existing model folder is never half-replaced. One download or
import runs at a time per models folder (`models_dir_lock`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import shutil
import sys
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from askany.core.config import Settings
from askany.core.errors import AskAnyError

MANIFEST = "askany-manifest.json"
FORMAT = 1
CHUNK = 1 << 20


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


def is_disk_full(error: BaseException | None) -> bool:
    """Whether `error`, or one of the errors it was raised from, is "no space left" (or over quota)."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


@contextlib.contextmanager
def disk_full_means(message: str) -> Iterator[None]:
    """Turn a full disk inside the block into a `DiskFullError` with this message; other errors pass."""
    try:
        yield
    except OSError as error:
        if is_disk_full(error):
            raise DiskFullError(message) from None
        raise


def short_error(error: BaseException) -> str:
    """The error's class and the first line of its text, for a one-sentence message."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text[:160]}" if text else type(error).__name__


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

    @classmethod
    def placed(cls, role: str, name: str, folder: Path, source: str, status: str, commit: str | None,
               files: dict[str, dict[str, Any]], seconds: float = 0.0) -> DownloadResult:
        """The result for a folder now in place holding `files` (as listed in its manifest)."""
        return cls(role, name, str(folder.resolve()), source, status, commit, len(files),
                   sum(f.get("size", 0) for f in files.values()), round(seconds, 3))


# ====================================================================== folders in MODELS_DIR

def with_models_dir(settings: Settings, models_dir: Path | str | None) -> Settings:
    return settings.model_copy(update={"models_dir": Path(models_dir)}) if models_dir else settings


def is_local_path(name: str) -> bool:
    """The same rule as `askany.models.registry.resolve_model`: an existing path or one written as a path."""
    return bool(name) and (Path(name).expanduser().exists() or name.startswith((".", "/", "~")))


def folder_name(repo_id: str) -> str:
    return repo_id.rstrip("/").split("/")[-1]


def model_folders(models_dir: Path) -> list[Path]:
    """The model folders of MODELS_DIR (hidden staging and partial folders left out)."""
    if not models_dir.is_dir():
        return []
    return sorted(p for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def staging_folder(models_dir: Path, name: str) -> Path:
    """A fresh hidden folder to build an import in (a killed run's is removed by `models_dir_lock`)."""
    return models_dir / f".import-{name}-{uuid.uuid4().hex[:8]}"


def check_target(repo_id: str | None, target: Path, setting: str) -> None:
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
def models_dir_lock(models_dir: Path) -> Iterator[None]:
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
    remove_all(models_dir.glob(".import-*"))
    for path in models_dir.glob(".old-*"):
        original = models_dir / path.name.removeprefix(".old-").rsplit("-", 1)[0]
        if original.exists():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.rename(original)


def move_into_place(staging: Path, target: Path) -> None:
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


def remove_all(folders: Iterable[Path]) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def safe_join(root: Path, relative: str, source: Path) -> Path:
    """`root/relative` for a name read from an archive; refuse absolute names, `..` and backslashes."""
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or ".." in parts or "\\" in relative:
        raise unsafe_name(source, relative)
    return root.joinpath(*parts)


def unsafe_name(source: Path, name: str) -> BundleError:
    """The error for an archive member that could land outside its folder (or is no plain file)."""
    return BundleError(f"{source} contains an unsafe file name ({name!r}); it was not made by AskAny "
                       f"or was tampered with, so nothing was changed.")


# ====================================================================== manifests and checksums

def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's `askany-manifest.json`, or None when AskAny did not put it there."""
    data = read_json(Path(folder) / MANIFEST)
    return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else None


def new_manifest(role: str | None, repo_id: str, meta: dict[str, Any],
                 files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What `askany-manifest.json` records: the role, the repo, where it came from (`meta`) and every file."""
    return {"format": FORMAT, "tool": "askany", "role": role, "repo_id": repo_id, "created": now(), **meta,
            "files": files}


def hash_folder(folder: Path, progress: bool, desc: str, skip: tuple[str, ...] = (),
                git: bool = False) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under `folder` except the manifest and `skip`ped top-level names."""
    names = [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != MANIFEST and p.relative_to(folder).parts[0] not in skip]
    return hash_files(folder, names, progress, desc, git)


def hash_files(folder: Path, names: list[str], progress: bool, desc: str,
               git: bool = False) -> dict[str, dict[str, Any]]:
    """sha256 and size of these files (and their git blob id with `git`), with a bar for large folders."""
    sizes = {name: (folder / name).stat().st_size for name in names}
    result: dict[str, dict[str, Any]] = {}
    with progress_bar(sum(sizes.values()), desc, progress and sum(sizes.values()) > 64 * CHUNK) as bar:
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


def changed_files(recorded: dict[str, dict[str, Any]], actual: dict[str, dict[str, Any]]) -> list[str]:
    """The recorded files whose sha256 is not the one in `actual` (or which `actual` lacks)."""
    return [name for name, entry in recorded.items() if actual.get(name, {}).get("sha256") != entry.get("sha256")]


# ====================================================================== small file helpers

def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def progress_bar(total: int | None, desc: str, enabled: bool, initial: int = 0) -> Iterator[Any]:
    """A tqdm byte counter on stderr (a silent one when not `enabled`)."""
    from tqdm import tqdm

    with tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
              disable=not enabled, file=sys.stderr, leave=False) as bar:
        yield bar


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
