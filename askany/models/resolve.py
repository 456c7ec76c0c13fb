"""Where a role's model is on disk, found offline first: local folder, MODELS_DIR, Hugging Face cache, hub.

A role's setting is a local folder or a hub id. A hub id is looked up in
`MODELS_DIR/<name>` (where `--download-models` puts it), then in the Hugging Face
cache, and only then, when neither the offline variables, HF_HUB_OFFLINE in the
settings nor the role's `*_LOCAL_FILES_ONLY` forbid it, fetched from the hub. A
refusal names which of those is the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from askany.core import environment
from askany.core.config import Settings
from askany.core.errors import ModelUnavailableError

if TYPE_CHECKING:  # the role table imports this module; roles are only passed in
    from askany.models.roles import Role

DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass
class ResolvedModel:
    """Where a role's model lives on disk and how it was found."""

    role: str
    name: str
    path: Path
    source: str  # "local folder", "models dir", "hf cache" or "hub download"
    offline: bool


def models_dir_candidate(settings: Settings, name: str) -> Path:
    """`MODELS_DIR/<last part of the hub id>`: where `--download-models` puts a model."""
    return settings.models_dir / name.rstrip("/").split("/")[-1]


def cached_snapshot(repo_id: str, cache: Path | None = None) -> Path | None:
    """`models--ORG--NAME/snapshots/<hash>` in the Hugging Face cache: refs/main's, else the newest; None if absent.

    `cache` defaults to the one huggingface_hub uses (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/...).
    """
    repo = (cache or environment.hf_hub_cache()) / ("models--" + repo_id.replace("/", "--"))
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


def offline_reason(settings: Settings, role: Role) -> str | None:
    """Why `role` may not reach a hub, naming the variable or setting that says so; None when it may."""
    variables = environment.offline_variables()
    if variables:
        return f"offline mode is on ({' and '.join(variables)} set in the environment)"
    if settings.hf_hub_offline:
        return "offline mode is on (HF_HUB_OFFLINE=true in the settings)"
    if role.local_only_setting is None:
        return f"{role.setting} must name a local folder"
    if getattr(settings, role.local_only_setting.lower()):
        return f"{role.local_only_setting} is set"
    return None


def resolve_model(settings: Settings, role: Role, allow_download: bool = True) -> ResolvedModel:
    """Find the folder for `role` following the offline-first rules; raise when it cannot be had.

    With `allow_download=False` (`--check`, `--verify-models`) an absent model is reported, never fetched.
    """
    name = role.configured_name(settings)
    if not name:
        raise ModelUnavailableError(role.name, f"{role.setting} is empty; set it to a local folder or a hub id")
    given = Path(name).expanduser()
    if given.exists() or name.startswith((".", "/", "~")):
        return ResolvedModel(role.name, name, given, "local folder", True)
    in_models_dir = models_dir_candidate(settings, name)
    if in_models_dir.is_dir():
        return ResolvedModel(role.name, name, in_models_dir, "models dir", True)
    if not role.kind.from_hub:
        raise ModelUnavailableError(role.name, f"{role.setting}={name} is not a local folder (looked in "
                                               f"{settings.models_dir}); run {role.download_command} or set it "
                                               f"to an extracted {role.kind.value} folder")
    cached = cached_snapshot(name)
    if cached is not None:
        return ResolvedModel(role.name, name, cached, "hf cache", True)
    reason = offline_reason(settings, role)
    if reason or not allow_download:
        # Name the real reason; a check that merely does not download has none to add.
        why = f" and {reason}" if reason else ""
        raise ModelUnavailableError(
            role.name, f"The {role.name} model {name} is not in {settings.models_dir} or the Hugging Face cache"
                       f"{why}; download it with: {role.download_command}")
    return ResolvedModel(role.name, name, _from_hub(settings, role, name), "hub download", False)


def _from_hub(settings: Settings, role: Role, repo_id: str) -> Path:
    """Download `repo_id` into the HF cache, failing within seconds when the hub is unreachable."""
    from huggingface_hub import snapshot_download

    endpoint = environment.hf_endpoint() or DEFAULT_ENDPOINT
    environment.default_download_timeout(settings.hub_timeout_seconds)
    try:
        return Path(snapshot_download(repo_id, etag_timeout=settings.hub_timeout_seconds))
    except Exception as error:
        raise ModelUnavailableError(
            role.name, f"The {role.name} model {repo_id} is not on this machine and {endpoint} could not be "
                       f"reached ({type(error).__name__}); set HF_ENDPOINT to a reachable mirror and run "
                       f"{role.download_command}, or copy the model folder and set {role.setting} to it"
        ) from None
