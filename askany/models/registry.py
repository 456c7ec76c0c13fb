"""Offline-first model loading for every role: embedding, reranker, LLM, HanLP tokenizer.

Models load lazily on first use, once per process (`ModelRegistry`). A role that
cannot load is remembered with its reason, so the rest of AskAny keeps working and
`--check` can say what to fix (`role_status`, which never loads weights or downloads).

What each role is (setting, offline flag, kind, loader) is the table in
`askany.models.roles`; finding its folder is `askany.models.resolve`, checking it
`askany.models.kinds`, loading it `askany.models.loaders`. This module also keeps the
by-name entry points other packages and tests call (`resolve_model(settings, "embedding")`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from askany.core.config import Settings
from askany.core.errors import ModelUnavailableError
from askany.models.loaders import (  # noqa: F401 - LoadedLLM and the helpers stay importable from here
    LoadedLLM,
    choose_device,
    choose_dtype,
    embedding_dimension,
    load_tokenizer,
)
from askany.models.resolve import ResolvedModel
from askany.models.resolve import resolve_model as _resolve
from askany.models.roles import EMBEDDING, HANLP, LLM, RERANKER, ROLE_TABLE, ROLES, Role, get_role

log = logging.getLogger(__name__)

__all__ = [
    "ROLES", "LoadedLLM", "ModelRegistry", "ResolvedModel", "RoleStatus", "check_model_folder", "choose_device",
    "choose_dtype", "embedding_dimension", "load_embedding", "load_embedding_tokenizer", "load_hanlp_tokenizer",
    "load_llm", "load_reranker", "missing_files", "resolve_model", "role_status", "shared_registry",
]


# ---------------------------------------------------------------- by-name entry points

def resolve_model(settings: Settings, role: str | Role, allow_download: bool = True) -> ResolvedModel:
    """Find the folder for `role` following the offline-first rules; raise when it cannot be had."""
    return _resolve(settings, get_role(role), allow_download)


def check_model_folder(role: str | Role, folder: Path) -> None:
    """Raise ModelUnavailableError naming what is wrong with `folder` for `role`."""
    get_role(role).check_folder(folder)


def missing_files(role: str | Role, folder: Path) -> list[str]:
    """Names of the files `role` needs that `folder` lacks (empty when complete)."""
    return get_role(role).missing_files(folder)


def load_embedding(settings: Settings) -> Any:
    return EMBEDDING.load(settings)


def load_reranker(settings: Settings) -> Any:
    return RERANKER.load(settings)


def load_llm(settings: Settings) -> LoadedLLM:
    return LLM.load(settings)


def load_hanlp_tokenizer(settings: Settings) -> Any:
    return HANLP.load(settings)


def load_embedding_tokenizer(settings: Settings) -> Any:
    """Only the embedding model's tokenizer: cheap, used to size chunks in model tokens. With the model
    on a server, only a copy already on disk is used (no download is tried)."""
    return load_tokenizer(settings, EMBEDDING, allow_download=settings.embedding_backend == "local")


#: What a registry can load: every role, plus the embedding model's tokenizer alone.
LOADERS: dict[str, Callable[[Settings], Any]] = {
    **{role.name: role.load for role in ROLE_TABLE},
    "embedding_tokenizer": load_embedding_tokenizer,
}


# ---------------------------------------------------------------- registry

@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    value: Any = None
    error: ModelUnavailableError | None = None
    tried: bool = False


class ModelRegistry:
    """Loads each role on first use, once; remembers failures so callers can degrade gracefully."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._slots: dict[str, _Slot] = {key: _Slot() for key in LOADERS}

    def get(self, key: str) -> Any:
        """The loaded model for `key`, or raise ModelUnavailableError (the same one on every call)."""
        slot = self._slots[key]
        with slot.lock:
            if not slot.tried:
                slot.tried = True
                try:
                    slot.value = LOADERS[key](self.settings)
                    log.info("Loaded %s model", key)
                except ModelUnavailableError as error:
                    slot.error = error
                    log.info("%s", error)  # callers report it (notices, --check); no duplicate warning
            if slot.error is not None:
                raise slot.error
            return slot.value

    def optional(self, key: str) -> Any | None:
        """The loaded model, or None when it is unavailable (the reason is logged once)."""
        try:
            return self.get(key)
        except ModelUnavailableError:
            return None

    def loaded(self, key: str) -> bool:
        """Whether the model for `key` is already in memory (never triggers a load)."""
        return self._slots[key].value is not None

    def value(self, key: str) -> Any | None:
        """The model for `key` if it is already in memory, else None (never triggers a load)."""
        return self._slots[key].value

    def error(self, key: str) -> ModelUnavailableError | None:
        return self._slots[key].error

    def embedding(self) -> Any:
        return self.get("embedding")

    def reranker(self) -> Any:
        return self.get("reranker")

    def llm(self) -> LoadedLLM:
        return self.get("llm")


_registry_lock = threading.Lock()
_registries: dict[int, ModelRegistry] = {}


def shared_registry(settings: Settings) -> ModelRegistry:
    """One registry per settings object for the whole process."""
    with _registry_lock:
        return _registries.setdefault(id(settings), ModelRegistry(settings))


# ---------------------------------------------------------------- status for --check

@dataclass
class RoleStatus:
    role: str
    setting: str
    name: str
    path: str | None
    source: str | None
    offline: bool
    missing: list[str]
    problem: str | None
    required: bool = True  # whether the settings use the role, so that --check fails without it
    remote: dict[str, Any] | None = None  # a server's role: its address, reported model, dimension
    runtime: dict[str, Any] | None = None  # a local encoder's runtime (askany.models.runtime.RuntimeState)

    @property
    def ok(self) -> bool:
        return self.problem is None


def role_status(settings: Settings, role: str | Role, probe: bool = True, runtime: bool = True) -> RoleStatus:
    """What `--check` reports for a role, without loading its weights or downloading anything.

    A role on a server is asked once (`askany.models.remote.probe`) unless ``probe`` is false; a local
    encoder's runtime (`askany.models.runtime`, read from its export cache) is given unless ``runtime``
    is false."""
    role = get_role(role)
    name = role.configured_name(settings)
    offline = role.local_only(settings)
    required = role.required(settings)
    backend = role.remote(settings)
    if backend is not None and required:
        from askany.models.remote import Endpoint
        from askany.models.remote import probe as ask_server

        found = ask_server(settings, role.name) if probe else {"base": Endpoint.of(settings, role.name).base}
        return RoleStatus(role.name, f"{role.name.upper()}_API_BASE", found.get("model", name), found["base"],
                          f"{backend} server", False, [], found.get("problem"), required, found)
    if not name and not required:  # an optional role left empty (HanLP: jieba is used)
        return RoleStatus(role.name, role.setting, name, None, None, offline, [], role.unused(settings), required)
    try:
        resolved = _resolve(settings, role, allow_download=False)
    except ModelUnavailableError as error:
        return RoleStatus(role.name, role.setting, name, None, None, offline, [], str(error), required)
    missing = role.missing_files(resolved.path) if resolved.path.is_dir() else []
    try:
        role.check_folder(resolved.path)
        problem = None
    except ModelUnavailableError as error:
        problem = str(error)
    state = None
    if runtime and role.runtime_setting and problem is None:
        from askany.models.runtime import runtime_status

        state = runtime_status(settings, role, resolved.path).as_dict()
    elif runtime and role.name == "llm" and settings.llm_backend == "transformers" and problem is None:
        from askany.models.runtime import llm_runtime_status

        state = llm_runtime_status(settings).as_dict()
    return RoleStatus(role.name, role.setting, name, str(resolved.path), resolved.source, offline,
                      missing, problem, required, runtime=state)
