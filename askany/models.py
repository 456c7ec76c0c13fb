"""Offline-first model loading for every role: embedding, reranker, LLM, HanLP tokenizer.

Each role's setting is a local folder or a hub id. A hub id is looked up in
`MODELS_DIR/<name>` (where `--download-models` puts it), then in the Hugging
Face cache, and only then, when neither offline flags nor the role's
`*_LOCAL_FILES_ONLY` forbid it, on the hub. Whatever is found is checked for the
files its role needs and always loaded from the folder with
`local_files_only=True`, so the loaders themselves never reach the network.

Models load lazily on first use, once per process (`ModelRegistry`). A role
that cannot load is remembered with its reason, so the rest of AskAny keeps
working and `--check` can say what to fix.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from askany.config import Settings
from askany.errors import ModelUnavailableError

log = logging.getLogger(__name__)

ROLES = ("embedding", "reranker", "llm", "hanlp")
ROLE_SETTING = {
    "embedding": "EMBEDDING_MODEL",
    "reranker": "RERANKER_MODEL",
    "llm": "LLM_MODEL",
    "hanlp": "HANLP_TOK_MODEL",
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "sentencepiece.bpe.model", "vocab.txt",
                   "vocab.json", "spiece.model")
TRUTHY = {"1", "true", "yes", "on"}


def download_command(role: str) -> str:
    return f"python -m askany.main --download-models {role}"


def hub_offline() -> bool:
    """True when the environment forbids any model hub access."""
    return any(os.environ.get(name, "").strip().lower() in TRUTHY
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def role_name(settings: Settings, role: str) -> str:
    return str(getattr(settings, ROLE_SETTING[role].lower())).strip()


def role_local_only(settings: Settings, role: str) -> bool:
    """Whether this role may not touch the hub (global offline flags or the role's own flag)."""
    own = {"embedding": settings.embedding_local_files_only,
           "reranker": settings.reranker_local_files_only,
           "llm": settings.llm_local_files_only,
           "hanlp": True}[role]
    return own or settings.hf_hub_offline or hub_offline()


# ---------------------------------------------------------------- folder checks

def _read_config(folder: Path, role: str) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelUnavailableError(
            role, f"{path} is corrupted ({error.msg if hasattr(error, 'msg') else error}); "
                  f"download the {role} model again with: {download_command(role)}") from None
    if not isinstance(config, dict):
        raise ModelUnavailableError(role, f"{path} is corrupted (not a JSON object); "
                                          f"download it again with: {download_command(role)}")
    return config


def missing_files(role: str, folder: Path) -> list[str]:
    """Names of the files `role` needs that `folder` lacks (empty when complete)."""
    if role == "hanlp":
        return [] if (folder / "config.json").is_file() else ["config.json"]
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append("model.safetensors (or pytorch_model.bin)")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing.append("tokenizer files (tokenizer.json or vocab/sentencepiece files)")
    if role == "embedding" and not (folder / "modules.json").is_file():
        missing.append("modules.json (a sentence-transformers folder is needed)")
    return missing


def _architectures(config: dict[str, Any]) -> list[str]:
    return [str(name) for name in config.get("architectures") or []]


def check_model_folder(role: str, folder: Path) -> None:
    """Raise ModelUnavailableError naming what is wrong with `folder` for `role`."""
    setting = ROLE_SETTING[role]
    if not folder.is_dir():
        raise ModelUnavailableError(role, f"{setting} points to {folder}, which is not a folder; "
                                          f"set {setting} to a model folder or run {download_command(role)}")
    if (folder / "config.json").is_file():
        _check_kind(role, folder, _read_config(folder, role))
    missing = missing_files(role, folder)
    if missing:
        raise ModelUnavailableError(
            role, f"The {role} model folder {folder} is missing {', '.join(missing)}; "
                  f"download it again with: {download_command(role)}")


def _check_kind(role: str, folder: Path, config: dict[str, Any]) -> None:
    """A folder holding another kind of model (a causal LM as EMBEDDING_MODEL, ...) is refused by name."""
    setting = ROLE_SETTING[role]
    if role == "hanlp":
        if "classpath" not in config:
            raise ModelUnavailableError(role, f"{folder} is not a HanLP model folder (its config.json has no "
                                              f"classpath); set HANLP_TOK_MODEL to an extracted HanLP tokenizer")
        return
    archs = _architectures(config)
    causal = any(name.endswith("ForCausalLM") for name in archs)
    classifier = any(name.endswith("ForSequenceClassification") for name in archs)
    wrong = None
    if role == "embedding" and (causal or classifier):
        wrong = f"a {archs[0]} model, not a sentence embedding model"
    elif role == "reranker" and archs and not classifier:
        wrong = f"a {archs[0]} model, not a sequence-classification cross encoder"
    elif role == "llm" and archs and not causal:
        wrong = f"a {archs[0]} model, not a causal language model"
    if wrong:
        raise ModelUnavailableError(role, f"{setting} points to {folder}, which holds {wrong}; "
                                          f"set {setting} to a {role} model folder")


# ---------------------------------------------------------------- resolution

@dataclass
class ResolvedModel:
    """Where a role's model lives on disk and how it was found."""

    role: str
    name: str
    path: Path
    source: str  # "local folder", "models dir", "hf cache" or "hub download"
    offline: bool


def _models_dir_candidate(settings: Settings, name: str) -> Path:
    return settings.models_dir / name.rstrip("/").split("/")[-1]


def resolve_model(settings: Settings, role: str) -> ResolvedModel:
    """Find the folder for `role` following the offline-first rules; raise when it cannot be had."""
    name = role_name(settings, role)
    setting = ROLE_SETTING[role]
    offline = role_local_only(settings, role)
    if not name:
        raise ModelUnavailableError(role, f"{setting} is empty; set it to a local folder or a hub id")
    given = Path(name).expanduser()
    if given.exists() or name.startswith((".", "/", "~")):
        return ResolvedModel(role, name, given, "local folder", True)
    in_models_dir = _models_dir_candidate(settings, name)
    if in_models_dir.is_dir():
        return ResolvedModel(role, name, in_models_dir, "models dir", True)
    if role == "hanlp":
        raise ModelUnavailableError(role, f"HANLP_TOK_MODEL={name} is not a local folder (looked in "
                                          f"{settings.models_dir}); run {download_command('hanlp')} or set it "
                                          f"to an extracted HanLP tokenizer folder")
    cached = _from_hf_cache(name)
    if cached is not None:
        return ResolvedModel(role, name, cached, "hf cache", True)
    if offline:
        why = "offline mode is on (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE)" if hub_offline() or settings.hf_hub_offline \
            else f"{setting.replace('_MODEL', '')}_LOCAL_FILES_ONLY is set"
        raise ModelUnavailableError(
            role, f"The {role} model {name} is not in {settings.models_dir} or the Hugging Face cache and "
                  f"{why}; download it with: {download_command(role)}")
    return ResolvedModel(role, name, _from_hub(settings, role, name), "hub download", False)


def _from_hf_cache(repo_id: str) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError) or an invalid repo id
        return None


def _from_hub(settings: Settings, role: str, repo_id: str) -> Path:
    """Download `repo_id` into the HF cache, failing within seconds when the hub is unreachable."""
    from huggingface_hub import snapshot_download

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(int(settings.hub_timeout_seconds)))
    try:
        return Path(snapshot_download(repo_id, etag_timeout=settings.hub_timeout_seconds))
    except Exception as error:
        raise ModelUnavailableError(
            role, f"The {role} model {repo_id} is not on this machine and {endpoint} could not be reached "
                  f"({type(error).__name__}); set HF_ENDPOINT to a reachable mirror and run "
                  f"{download_command(role)}, or copy the model folder and set {ROLE_SETTING[role]} to it"
        ) from None


# ---------------------------------------------------------------- device

def choose_device(settings: Settings) -> str:
    """cuda, then mps, then cpu, unless DEVICE names one."""
    import torch

    if settings.device != "auto":
        if settings.device == "cuda" and not torch.cuda.is_available():
            raise ModelUnavailableError("device", "DEVICE=cuda but no CUDA GPU is available; set DEVICE=auto or cpu")
        if settings.device == "mps" and not torch.backends.mps.is_available():
            raise ModelUnavailableError("device", "DEVICE=mps but MPS is not available; set DEVICE=auto or cpu")
        return settings.device
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def choose_dtype(device: str) -> Any:
    import torch

    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


# ---------------------------------------------------------------- loaders

def load_embedding(settings: Settings) -> Any:
    # Resolve and check before importing the library: a missing model is reported without a slow import.
    resolved = resolve_model(settings, "embedding")
    check_model_folder("embedding", resolved.path)
    from sentence_transformers import SentenceTransformer

    return _load_guarded("embedding", resolved.path, lambda: SentenceTransformer(
        str(resolved.path), device=choose_device(settings), local_files_only=True))


def embedding_dimension(model: Any) -> int:
    """The vector size of a SentenceTransformer (the method was renamed in sentence-transformers 6)."""
    method = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(method())


def load_reranker(settings: Settings) -> Any:
    resolved = resolve_model(settings, "reranker")
    check_model_folder("reranker", resolved.path)
    from sentence_transformers import CrossEncoder

    return _load_guarded("reranker", resolved.path, lambda: CrossEncoder(
        str(resolved.path), device=choose_device(settings), local_files_only=True,
        max_length=settings.rerank_max_length))


@dataclass
class LoadedLLM:
    model: Any
    tokenizer: Any
    device: str
    path: Path


def load_llm(settings: Settings) -> LoadedLLM:
    resolved = resolve_model(settings, "llm")
    check_model_folder("llm", resolved.path)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = choose_device(settings)

    def load() -> LoadedLLM:
        tokenizer = AutoTokenizer.from_pretrained(str(resolved.path), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            str(resolved.path), local_files_only=True, dtype=choose_dtype(device))
        model.to(device).eval()
        return LoadedLLM(model, tokenizer, device, resolved.path)

    return _load_guarded("llm", resolved.path, load)


def load_embedding_tokenizer(settings: Settings) -> Any:
    """Only the embedding model's tokenizer: cheap, used to size chunks in model tokens."""
    resolved = resolve_model(settings, "embedding")
    check_model_folder("embedding", resolved.path)
    from transformers import AutoTokenizer

    return _load_guarded("embedding", resolved.path,
                         lambda: AutoTokenizer.from_pretrained(str(resolved.path), local_files_only=True))


def load_hanlp_tokenizer(settings: Settings) -> Any:
    resolved = resolve_model(settings, "hanlp")
    check_model_folder("hanlp", resolved.path)
    import hanlp

    # A downloaded tokenizer carries its transformer in ./transformer: point HanLP there, so the folder can move.
    local_transformer = resolved.path / "transformer"
    extra = {"transformer": str(local_transformer)} if local_transformer.is_dir() else {}
    return _load_guarded("hanlp", resolved.path, lambda: hanlp.load(str(resolved.path), **extra))


def _load_guarded(role: str, folder: Path, load: Any) -> Any:
    """Run a library loader, turning its failures into one sentence naming the folder and the fix."""
    try:
        return load()
    except ModelUnavailableError:
        raise
    except Exception as error:  # noqa: BLE001 - libraries raise anything on a bad folder (SafetensorError, ...)
        first_line = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise ModelUnavailableError(
            role, f"The {role} model in {folder} could not be loaded ({first_line}); check that "
                  f"{ROLE_SETTING[role]} points to a complete {role} model or run {download_command(role)}"
        ) from None


LOADERS = {
    "embedding": load_embedding,
    "reranker": load_reranker,
    "llm": load_llm,
    "hanlp": load_hanlp_tokenizer,
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

    @property
    def ok(self) -> bool:
        return self.problem is None


def role_status(settings: Settings, role: str) -> RoleStatus:
    """What `--check` reports for a role, without loading its weights."""
    name = role_name(settings, role)
    offline = role_local_only(settings, role)
    if role == "hanlp" and not name:
        return RoleStatus(role, ROLE_SETTING[role], name, None, None, True, [],
                          "not configured: jieba is used for tokenization")
    try:
        # Never download during a check: pretend offline so an absent model is reported, not fetched.
        resolved = resolve_model(settings.model_copy(update={
            f"{role}_local_files_only": True} if role != "hanlp" else {}), role)
    except ModelUnavailableError as error:
        return RoleStatus(role, ROLE_SETTING[role], name, None, None, offline, [], str(error))
    missing = missing_files(role, resolved.path) if resolved.path.is_dir() else []
    try:
        check_model_folder(role, resolved.path)
        problem = None
    except ModelUnavailableError as error:
        problem = str(error)
    return RoleStatus(role, ROLE_SETTING[role], name, str(resolved.path), resolved.source, offline,
                      missing, problem)
