"""Loading a role's model from its folder, one loader per kind, never touching the network.

Each loader resolves the role's folder (`askany.models.resolve`), checks it for the
files its kind needs (`askany.models.kinds`) before importing the library, so a
missing model is reported without a slow import, and loads it with
`local_files_only=True`. Whatever the library raises on a bad folder becomes one
sentence naming the folder and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from askany.core.config import Settings
from askany.core.errors import ModelUnavailableError
from askany.core.text import first_line
from askany.models.kinds import check_folder, hanlp_transformer
from askany.models.resolve import resolve_model
from askany.models.runtime import apply_runtime

if TYPE_CHECKING:  # the role table imports this module; roles are only passed in
    from askany.models.roles import Role


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


def choose_dtype(device: str, setting: str = "auto") -> Any:
    """The LLM's torch dtype: LLM_DTYPE, or for auto the fastest one `device` computes natively."""
    import torch

    from askany.models.precision import llm_dtype

    return getattr(torch, llm_dtype(setting, device)[0])


# ---------------------------------------------------------------- loaders, one per kind

def checked_folder(settings: Settings, role: Role, allow_download: bool = True) -> Path:
    """The role's folder, resolved and checked (before any library import: missing models are reported fast)."""
    resolved = resolve_model(settings, role, allow_download)
    check_folder(role, resolved.path)
    return resolved.path


def load_embedding_model(settings: Settings, role: Role) -> Any:
    """The embedding role as EMBEDDING_BACKEND says: the local folder, or a client of its server."""
    if settings.embedding_backend == "openai":
        from askany.models.remote import RemoteEmbedder

        return RemoteEmbedder(settings)
    return load_sentence_transformer(settings, role)


def load_reranker_model(settings: Settings, role: Role) -> Any:
    if settings.reranker_backend != "local":
        from askany.models.remote import RemoteReranker

        return RemoteReranker(settings)
    return load_cross_encoder(settings, role)


def load_sentence_transformer(settings: Settings, role: Role) -> Any:
    path = checked_folder(settings, role)
    from sentence_transformers import SentenceTransformer

    device = choose_device(settings)
    model = _load_guarded(role, path, lambda: SentenceTransformer(str(path), device=device, local_files_only=True))
    return apply_runtime(settings, role, path, model, device)  # EMBEDDING_RUNTIME: torch, or ONNX


def load_cross_encoder(settings: Settings, role: Role) -> Any:
    path = checked_folder(settings, role)
    from sentence_transformers import CrossEncoder

    device = choose_device(settings)
    model = _load_guarded(role, path, lambda: CrossEncoder(
        str(path), device=device, local_files_only=True, max_length=settings.rerank_max_length))
    return apply_runtime(settings, role, path, model, device)  # RERANKER_RUNTIME


@dataclass
class LoadedLLM:
    model: Any
    tokenizer: Any
    device: str
    path: Path


def load_causal_lm(settings: Settings, role: Role) -> LoadedLLM:
    path = checked_folder(settings, role)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = choose_device(settings)

    def load() -> LoadedLLM:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        dtype = choose_dtype(device, settings.llm_dtype)
        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=dtype)
        model.to(device).eval()
        return LoadedLLM(model, tokenizer, device, path)

    return _load_guarded(role, path, load)


def load_tokenizer(settings: Settings, role: Role, allow_download: bool = True) -> Any:
    """Only the role's tokenizer: cheap, used to size chunks in the embedding model's tokens."""
    path = checked_folder(settings, role, allow_download)
    from transformers import AutoTokenizer

    return _load_guarded(role, path, lambda: AutoTokenizer.from_pretrained(str(path), local_files_only=True))


def load_hanlp(settings: Settings, role: Role) -> Any:
    path = checked_folder(settings, role)
    import hanlp

    # Point HanLP at the transformer the folder carries, so the folder works wherever it was moved.
    transformer = hanlp_transformer(path)
    extra = {"transformer": str(transformer)} if transformer else {}
    return _load_guarded(role, path, lambda: hanlp.load(str(path), **extra))


def embedding_dimension(model: Any) -> int:
    """The vector size of a SentenceTransformer (the method was renamed in sentence-transformers 6)."""
    method = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(method())


def _load_guarded(role: Role, folder: Path, load: Any) -> Any:
    """Run a library loader, turning its failures into one sentence naming the folder and the fix."""
    try:
        return load()
    except ModelUnavailableError:
        raise
    except Exception as error:  # noqa: BLE001 - libraries raise anything on a bad folder (SafetensorError, ...)
        raise ModelUnavailableError(
            role.name, f"The {role.name} model in {folder} could not be loaded ({first_line(error)[:300]}); check "
                       f"that {role.setting} points to a complete {role.name} model or run {role.download_command}"
        ) from None
