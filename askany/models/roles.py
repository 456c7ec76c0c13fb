"""The role table: for each model AskAny uses, its setting, offline flag, kind, when it is needed and its loader.

Everything that depends on the role (which setting names its model, which flag keeps it
off the hub, which files its folder needs, how it loads, whether `--check` fails
without it) reads this table instead of testing role names. The names themselves
("embedding", "reranker", "llm", "hanlp") stay plain strings at the edges: command-line
arguments, JSON output, manifests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from askany.core.config import Settings
from askany.models import loaders
from askany.models.kinds import Kind, check_folder, missing_files
from askany.models.resolve import offline_reason


@dataclass(frozen=True)
class Role:
    """One model role and everything AskAny needs to know about it."""

    name: str  # as written on the command line and in JSON: "embedding"
    setting: str  # the setting naming its folder or hub id: "EMBEDDING_MODEL"
    local_only_setting: str | None  # the setting that keeps it off the hub; None: never from a hub
    kind: Kind  # what its folder holds, hence which files it needs and how it is checked
    unused: Callable[[Settings], str | None]  # why these settings do not use it; None: they do
    loader: Callable[[Settings, Role], Any]  # loads it from its folder (askany.models.loaders)
    # the backend setting's value when a server runs the model (askany.models.remote); None: local
    remote: Callable[[Settings], str | None] = lambda _settings: None
    # the setting choosing torch or ONNX for a local encoder (askany.models.runtime); None: always torch
    runtime_setting: str | None = None

    @property
    def download_command(self) -> str:
        return f"python -m askany.main --download-models {self.name}"

    def configured_name(self, settings: Settings) -> str:
        """The folder or hub id the settings give for this role ('' when unset)."""
        return str(getattr(settings, self.setting.lower())).strip()

    def local_only(self, settings: Settings) -> bool:
        """Whether this role may not touch a hub (offline variables, HF_HUB_OFFLINE or its own flag)."""
        return offline_reason(settings, self) is not None

    def required(self, settings: Settings) -> bool:
        """Whether these settings use the role, so that `--check` fails when it cannot load."""
        return self.unused(settings) is None

    def missing_files(self, folder: Path) -> list[str]:
        """What `folder` lacks of the files this role's kind needs."""
        return missing_files(self.kind, folder)

    def check_folder(self, folder: Path) -> None:
        """Raise ModelUnavailableError naming what is wrong with `folder` for this role."""
        check_folder(self, folder)

    def load(self, settings: Settings) -> Any:
        return self.loader(settings, self)


EMBEDDING = Role(
    "embedding", "EMBEDDING_MODEL", "EMBEDDING_LOCAL_FILES_ONLY", Kind.SENTENCE_TRANSFORMER,
    lambda s: None if s.embedding_enabled else "not used (EMBEDDING_ENABLED=false)",
    loaders.load_embedding_model,
    lambda s: None if s.embedding_backend == "local" else s.embedding_backend,
    "EMBEDDING_RUNTIME")
RERANKER = Role(
    "reranker", "RERANKER_MODEL", "RERANKER_LOCAL_FILES_ONLY", Kind.CROSS_ENCODER,
    lambda s: None if s.reranker_enabled else "not used (RERANKER_ENABLED=false)",
    loaders.load_reranker_model,
    lambda s: None if s.reranker_backend == "local" else s.reranker_backend,
    "RERANKER_RUNTIME")
# The remote LLM is not loaded through the registry: generation/backends/openai.py talks to it.
LLM = Role(
    "llm", "LLM_MODEL", "LLM_LOCAL_FILES_ONLY", Kind.CAUSAL_LM,
    lambda s: None if s.llm_backend != "none" else "not used (LLM_BACKEND=none)",
    loaders.load_causal_lm,
    lambda s: "openai" if s.llm_backend == "openai" else None)
HANLP = Role(
    "hanlp", "HANLP_TOK_MODEL", None, Kind.HANLP,
    lambda s: None if s.hanlp_tok_model else "not configured: jieba is used",
    loaders.load_hanlp)

ROLE_TABLE: tuple[Role, ...] = (EMBEDDING, RERANKER, LLM, HANLP)
ROLES: tuple[str, ...] = tuple(role.name for role in ROLE_TABLE)
_BY_NAME = {role.name: role for role in ROLE_TABLE}


def role_named(name: str | None) -> Role | None:
    """The role called `name` ("embedding", ...), or None for any other string (an old manifest, "")."""
    return _BY_NAME.get(name or "")


def get_role(role: str | Role) -> Role:
    """The role itself, given it or its name; an unknown name is a programming error (KeyError)."""
    return role if isinstance(role, Role) else _BY_NAME[role]


def required_roles(settings: Settings) -> list[str]:
    """The model roles the settings ask for: missing one makes `--check` fail (the rest degrade quietly)."""
    return [role.name for role in ROLE_TABLE if role.required(settings)]
