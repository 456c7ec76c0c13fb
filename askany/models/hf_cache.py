"""`--import-hf-cache`: copy models already in the Hugging Face cache into MODELS_DIR, no network.

The cache keeps `models--ORG--NAME/snapshots/<hash>` as symlinks into `blobs/`;
the copy is made of real files, checked for the role's needs, given a manifest
and renamed into place like a download.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from askany.core import environment
from askany.core.config import Settings
from askany.core.errors import ModelUnavailableError
from askany.models.files import (
    MANIFEST,
    DownloadResult,
    NotInCacheError,
    check_target,
    disk_full_means,
    folder_name,
    hash_folder,
    is_local_path,
    models_dir_lock,
    move_into_place,
    new_manifest,
    staging_folder,
    with_models_dir,
    write_json,
)
from askany.models.resolve import cached_snapshot
from askany.models.roles import ROLE_TABLE, Role

#: The roles whose setting may be a hub id, hence whose model may be in the Hugging Face cache.
HUB_ROLES = tuple(role for role in ROLE_TABLE if role.kind.from_hub)


def import_hf_cache(settings: Settings, model_ids: list[str] | None = None, cache_dir: Path | str | None = None,
                    models_dir: Path | str | None = None, progress: bool = True) -> list[DownloadResult]:
    """Copy models from the Hugging Face cache (`models--ORG--NAME/snapshots/<hash>`) into MODELS_DIR.

    Without `model_ids` the configured embedding, reranker and LLM ids are imported,
    and those not in the cache are reported rather than refused.
    """
    settings = with_models_dir(settings, models_dir)
    cache = _hf_cache_dir(cache_dir)
    explicit = bool(model_ids)
    ids = list(model_ids) if model_ids else [r.configured_name(settings) for r in HUB_ROLES
                                              if not is_local_path(r.configured_name(settings))]
    found: list[tuple[str, Path | None]] = []
    for repo_id in ids:
        snapshot = cached_snapshot(repo_id, cache)
        if snapshot is None and explicit:
            raise NotInCacheError(f"{repo_id} is not in the Hugging Face cache at {cache}; download it with "
                                  f"python -m askany.main --download-models, or pass the right cache folder.")
        if snapshot is not None:
            check_target(repo_id, settings.models_dir / folder_name(repo_id), _setting_for(settings, repo_id))
        found.append((repo_id, snapshot))
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    results = []
    with models_dir_lock(settings.models_dir):
        for repo_id, snapshot in found:
            role = _role_for_repo(settings, repo_id)
            if snapshot is None:
                results.append(DownloadResult(role.name if role else "", repo_id, None, "hf-cache", "not in cache",
                                              note=f"not in {cache}"))
                continue
            results.append(_import_snapshot(settings, role, repo_id, snapshot, cache, progress))
    return results


def _hf_cache_dir(cache_dir: Path | str | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir else environment.hf_hub_cache()


def _role_for_repo(settings: Settings, repo_id: str) -> Role | None:
    for role in HUB_ROLES:
        if role.configured_name(settings).lower() == repo_id.lower():
            return role
    return None


def _setting_for(settings: Settings, repo_id: str) -> str:
    role = _role_for_repo(settings, repo_id)
    return role.setting if role else "the model setting"


def _import_snapshot(settings: Settings, role: Role | None, repo_id: str, snapshot: Path, cache: Path,
                     progress: bool) -> DownloadResult:
    """Copy the snapshot's files (following the cache's symlinks) into place through a staging folder."""
    started = time.monotonic()
    name = folder_name(repo_id)
    target = settings.models_dir / name
    staging = staging_folder(settings.models_dir, name)
    try:
        with disk_full_means(f"The disk holding {settings.models_dir} is full while copying {repo_id}; free "
                             f"some space and run the import again."):
            _check_snapshot_complete(repo_id, snapshot, cache)
            _copy_real_files(snapshot, staging, repo_id)
            if role:
                try:
                    role.check_folder(staging)
                except ModelUnavailableError:
                    raise NotInCacheError(f"The cached {repo_id} lacks what the {role.name} role needs "
                                          f"({', '.join(role.missing_files(staging))}); download it with "
                                          f"{role.download_command}.") from None
            files = hash_folder(staging, progress, f"Checking {name}")
            meta = {"source": "hf-cache", "endpoint": None, "revision": None, "commit": snapshot.name}
            write_json(staging / MANIFEST, new_manifest(role.name if role else None, repo_id, meta, files))
            move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return DownloadResult.placed(role.name if role else "", repo_id, target, "hf-cache", "imported", snapshot.name,
                                 files, time.monotonic() - started)


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
