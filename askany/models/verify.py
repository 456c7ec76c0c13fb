"""`--verify-models`: check each role's folder without network: files, config, weights, recorded checksums."""

from __future__ import annotations

import json
import math
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from askany.core.config import Settings
from askany.core.errors import ModelUnavailableError
from askany.models.files import (
    hash_files,
    human_size,
    model_folders,
    read_json,
    read_manifest,
    short_error,
    with_models_dir,
)
from askany.models.kinds import Kind, weight_files
from askany.models.resolve import resolve_model
from askany.models.roles import ROLE_TABLE, Role


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


def verify_models(settings: Settings, models_dir: Path | str | None = None,
                  progress: bool = True) -> list[VerifyRow]:
    """Check every role's folder: files, config, weights and recorded checksums (no network)."""
    settings = with_models_dir(settings, models_dir)
    return [_verify_role(settings, role, progress) for role in ROLE_TABLE]


def _verify_role(settings: Settings, role: Role, progress: bool) -> VerifyRow:
    setting = f"{role.setting}={role.configured_name(settings)}"
    folder = _locate(settings, role)
    unused = role.unused(settings)  # the same rule as --check
    if unused is None and role.remote(settings):
        unused = f"not used ({role.name.upper()}_BACKEND={role.remote(settings)})"  # a server runs it
    if folder is None or (isinstance(folder, VerifyRow) and unused):
        return VerifyRow(role.name, setting, None, ok=True, files=unused or "not configured",
                         files_ok=True, config_ok=True, weights_ok=True)
    if isinstance(folder, VerifyRow):
        return folder
    row = VerifyRow(role.name, setting, str(folder.resolve()))
    missing = role.missing_files(folder)
    row.files_ok = not missing
    row.files = "all present" if not missing else "missing " + ", ".join(missing)
    row.config_ok, row.config = check_config(role, folder)
    row.weights_ok, row.weights = check_weights(role, folder)
    row.checksums_ok, row.checksums = _check_checksums(folder, progress)
    row.ok = row.files_ok and row.config_ok and row.weights_ok and row.checksums_ok is not False
    if not row.ok:
        first = next(note for ok, note in ((row.files_ok, row.files), (row.config_ok, row.config),
                                           (row.weights_ok, row.weights), (row.checksums_ok, row.checksums))
                     if ok is False)
        row.problem = (f"The {role.name} model in {folder} fails its check ({first}); download it again with "
                       f"{role.download_command}.")
    return row


def _locate(settings: Settings, role: Role) -> Path | VerifyRow | None:
    """The folder this role would load, found without network; a failed row when there is none."""
    name = role.configured_name(settings)
    if not name and not role.required(settings):  # an optional role left empty: one AskAny downloaded, if any
        return _find_by_role(settings.models_dir, role.name)
    try:
        return resolve_model(settings, role, allow_download=False).path
    except ModelUnavailableError as error:
        return VerifyRow(role.name, f"{role.setting}={name}", None, files="not found", problem=str(error))


def _find_by_role(models_dir: Path, role: str) -> Path | None:
    for folder in model_folders(models_dir):
        manifest = read_manifest(folder)
        if manifest and manifest.get("role") == role:
            return folder
    return None


def check_config(role: Role, folder: Path) -> tuple[bool, str]:
    """Whether the folder's config.json loads and suits the role, and a note saying what was found."""
    if not (folder / "config.json").is_file():
        return False, "no config.json"
    if not role.missing_files(folder):
        try:
            role.check_folder(folder)  # JSON, and the right kind of model for the role
        except ModelUnavailableError as error:
            return False, str(error)
    if role.kind is Kind.HANLP:
        return _check_hanlp_config(folder)
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as error:  # whatever transformers raises for a config it cannot read
        return False, f"config.json does not load ({short_error(error)})"
    return True, f"loads ({config.model_type})"


def _check_hanlp_config(folder: Path) -> tuple[bool, str]:
    config = read_json(folder / "config.json")
    transformer = config.get("transformer") if isinstance(config, dict) else None
    if not isinstance(transformer, str) or not transformer:
        return True, "loads (no transformer)"
    if not Path(transformer).is_absolute():
        return False, f"names the transformer {transformer}, which HanLP would download at load time"
    if not (Path(transformer) / "config.json").is_file():
        return False, f"its transformer folder {transformer} is missing (moved?); import or download it again"
    return True, "loads (transformer in place)"


def check_weights(role: Role, folder: Path) -> tuple[bool, str]:
    """Whether the weights (every shard of a sharded model) are whole, from their structure alone."""
    found = [folder / name for name in weight_files(role.kind) if (folder / name).is_file()]
    if not found:
        return False, "no weights file"
    path = found[0]
    shards = [path]
    if path.name.endswith(".index.json"):
        index = read_json(path)
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
    actual = hash_files(folder, list(recorded), progress, f"Verifying {folder.name}")
    differ = [name for name, entry in recorded.items()
              if actual[name]["sha256"] != entry.get("sha256") or actual[name]["size"] != entry.get("size")]
    if differ:
        return False, f"{', '.join(differ[:3])} changed since the download (checksum differs)"
    return True, f"match ({len(recorded)} files)"
