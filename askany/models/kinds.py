"""Kinds of model folder (sentence transformer, cross encoder, causal LM, HanLP tokenizer) and what each must hold.

`check_folder` refuses a folder that lacks a file its kind needs, or that holds another
kind of model (a causal LM given as EMBEDDING_MODEL, ...), with one sentence naming the
setting and the fix. The HanLP helpers keep a tokenizer folder pointing at the transformer
it carries, wherever the folder is moved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from askany.core.errors import ModelUnavailableError
from askany.models.files import write_json

if TYPE_CHECKING:  # the role table imports this module; roles are only passed in
    from askany.models.roles import Role


class Kind(Enum):
    """What a model folder holds; the value is how messages name it."""

    SENTENCE_TRANSFORMER = "sentence embedding model"
    CROSS_ENCODER = "sequence-classification cross encoder"
    CAUSAL_LM = "causal language model"
    HANLP = "HanLP tokenizer"

    @property
    def from_hub(self) -> bool:
        """Whether a hub id may name it (looked up in the Hugging Face cache, downloaded from a hub).

        HanLP tokenizers come from HanLP's own file server as archives, never from a hub.
        """
        return self is not Kind.HANLP


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")
HANLP_WEIGHT_FILES = ("model.pt", "model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "sentencepiece.bpe.model", "vocab.txt",
                   "vocab.json", "spiece.model")


@dataclass(frozen=True)
class Need:
    """One thing a folder must hold: any one of `names`, called `description` when it is missing."""

    description: str
    names: tuple[str, ...]

    def met(self, folder: Path) -> bool:
        return any((folder / name).is_file() for name in self.names)


CONFIG = Need("config.json", ("config.json",))
WEIGHTS = Need("model.safetensors (or pytorch_model.bin)", WEIGHT_FILES)
TOKENIZER = Need("tokenizer files (tokenizer.json or vocab/sentencepiece files)", TOKENIZER_FILES)
MODULES = Need("modules.json (a sentence-transformers folder is needed)", ("modules.json",))

#: The required-files check of each kind, in the order missing files are named.
NEEDS: dict[Kind, tuple[Need, ...]] = {
    Kind.SENTENCE_TRANSFORMER: (CONFIG, WEIGHTS, TOKENIZER, MODULES),
    Kind.CROSS_ENCODER: (CONFIG, WEIGHTS, TOKENIZER),
    Kind.CAUSAL_LM: (CONFIG, WEIGHTS, TOKENIZER),
    # A HanLP folder's weights (model.pt) are checked by --verify-models, not needed to name it one.
    Kind.HANLP: (CONFIG,),
}


def missing_files(kind: Kind, folder: Path) -> list[str]:
    """What `folder` lacks of the files a `kind` folder needs (empty when complete)."""
    return [need.description for need in NEEDS[kind] if not need.met(folder)]


def weight_files(kind: Kind) -> tuple[str, ...]:
    """The file names a `kind` folder's weights may have, the preferred first."""
    return HANLP_WEIGHT_FILES if kind is Kind.HANLP else WEIGHT_FILES


def check_folder(role: Role, folder: Path) -> None:
    """Raise ModelUnavailableError naming what is wrong with `folder` for `role`."""
    setting = role.setting
    if not folder.is_dir():
        raise ModelUnavailableError(role.name, f"{setting} points to {folder}, which is not a folder; "
                                               f"set {setting} to a model folder or run {role.download_command}")
    if (folder / "config.json").is_file():
        _check_kind(role, folder, _read_config(role, folder))
    missing = missing_files(role.kind, folder)
    if missing:
        raise ModelUnavailableError(
            role.name, f"The {role.name} model folder {folder} is missing {', '.join(missing)}; "
                       f"download it again with: {role.download_command}")


def _read_config(role: Role, folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelUnavailableError(
            role.name, f"{path} is corrupted ({error.msg if hasattr(error, 'msg') else error}); "
                       f"download the {role.name} model again with: {role.download_command}") from None
    if not isinstance(config, dict):
        raise ModelUnavailableError(role.name, f"{path} is corrupted (not a JSON object); "
                                               f"download it again with: {role.download_command}")
    return config


def _check_kind(role: Role, folder: Path, config: dict[str, Any]) -> None:
    """A folder holding another kind of model is refused by name."""
    setting = role.setting
    if role.kind is Kind.HANLP:
        if "classpath" not in config:
            raise ModelUnavailableError(role.name, f"{folder} is not a HanLP model folder (its config.json has "
                                                   f"no classpath); set {setting} to an extracted HanLP tokenizer")
        return
    archs = [str(name) for name in config.get("architectures") or []]
    causal = any(name.endswith("ForCausalLM") for name in archs)
    classifier = any(name.endswith("ForSequenceClassification") for name in archs)
    # An embedding folder may name any encoder (or none); the other kinds must say what they are.
    suits = {Kind.SENTENCE_TRANSFORMER: not (causal or classifier),
             Kind.CROSS_ENCODER: not archs or classifier,
             Kind.CAUSAL_LM: not archs or causal}[role.kind]
    if not suits:
        raise ModelUnavailableError(role.name, f"{setting} points to {folder}, which holds a {archs[0]} model, "
                                               f"not a {role.kind.value}; set {setting} to a {role.name} model "
                                               f"folder")


# ---------------------------------------------------------------- HanLP folders

#: Where a HanLP tokenizer folder AskAny downloaded keeps the transformer it needs.
TRANSFORMER_DIR = "transformer"


def hanlp_transformer(folder: Path) -> Path | None:
    """The transformer a HanLP tokenizer folder carries in `./transformer` (as AskAny downloads it), or None."""
    path = folder / TRANSFORMER_DIR
    return path if path.is_dir() else None


def repoint_hanlp(folder: Path, home: Path) -> bool:
    """Make `folder/config.json` name its own transformer by absolute path, as it will be once `folder` is `home`.

    HanLP's config names the transformer by absolute path (or by hub id, which HanLP would
    download at load time), so a folder that is downloaded, imported or moved must be told
    where its transformer now lives. Returns whether the config was rewritten.
    """
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(config, dict) or hanlp_transformer(folder) is None:
        return False
    config["transformer"] = str(home.resolve() / TRANSFORMER_DIR)
    write_json(config_path, config)
    return True
