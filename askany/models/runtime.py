"""The encoders' runtime (EMBEDDING_RUNTIME, RERANKER_RUNTIME): torch in fp32 or bf16, or ONNX Runtime
in fp32 or int8.

torch-bf16 casts the loaded model to bf16: no export, half the memory once loaded, and on a CPU with
AMX the fastest runtime measured (askany/models/precision.py), so `auto` takes it there.

An ONNX model is exported once, offline, from the local model folder: torch's own exporter
(`torch.onnx.export`, the dynamo path; needs the `onnx` and `onnxscript` packages), then for
int8 onnxruntime's dynamic quantization. It is checked against the torch model on fixed texts
(cosine of the vectors, agreement of the reranker's scores) before it is used, and kept in a
cache beside the folder (`<parent>/.askany-onnx/`, or DATA_DIR/onnx when the parent is
read-only), keyed by the folder's files, so a changed folder is exported again. The export is
written to a temporary folder and renamed into place, under a file lock, so two processes
exporting at once neither corrupt the cache nor both do the work.

The exported graph replaces only the transformer inside the sentence-transformers model
(`model[0].model`): tokenization, truncation to the model's max length, batching, pooling and
normalization stay sentence-transformers' own, so callers see the same vectors and scores.

Any failure (a package missing, the export, the check) keeps the torch model with a one-line
notice; a failed export or check is recorded beside the cache, so later starts do not try again
until the folder or the recipe changes, and `--check` can say why.

Nothing here imports onnxruntime, onnx or torch at import time: only a load does.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from askany.core.config import Settings
from askany.core.text import first_line
from askany.models.files import now, read_json, write_json

if TYPE_CHECKING:
    from askany.models.roles import Role

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "torch-bf16", "onnx", "onnx-int8")
#: The runtimes that run the torch model itself (nothing exported).
TORCH_RUNTIMES = ("torch", "torch-bf16")
#: Bump when the export or quantization changes: every cache is then made again.
RECIPE = 2
CACHE_DIR = ".askany-onnx"
RECORD = "askany-onnx.json"
ONNX_FILE = "model.onnx"
#: What an ONNX runtime needs installed (import names).
PACKAGES = ("onnxruntime", "onnx", "onnxscript")

#: Fixed texts the exported model is checked on: Chinese and English, short and long.
CHECK_TEXTS = (
    "员工每年可以享受十五天带薪年假，工作满十年以后增加到二十天。",
    "向量检索把文本转换成向量，再根据向量之间的相似度找到相关的段落。",
    "北京是中华人民共和国的首都。",
    "请问这个月的电费是多少？",
    "Keyword search with BM25 works well for names, codes and numbers like 42 or 3.14.",
    "长江是中国最长的河流，全长约六千三百公里。黄河被称为中华民族的母亲河。珠穆朗玛峰是世界上海拔最高的山峰。",
)
CHECK_QUESTIONS = ("年假有多少天？", "中国最长的河流是哪条？")

#: Feed-forward output projections (from the first layer on) left in fp32 in int8 models: their inputs,
#: the GELU outputs, carry the outliers per-tensor activation quantization handles worst. Measured on
#: all-MiniLM-L6-v2 (bench/encoders.py): mean cosine to torch 0.987 with none kept, 0.992 with 2,
#: 0.996 with all 6; 2 of bge-m3's 24 cost about 3 % of its matrix work.
FFN_DOWN_FP32 = 2
#: The least cosine, text by text, between the ONNX and the torch vectors.
MIN_COSINE = {"onnx": 0.999, "onnx-int8": 0.97}
#: The least mean cosine over the check texts.
MIN_MEAN_COSINE = {"onnx": 0.9995, "onnx-int8": 0.99}
#: The largest reranker score difference, as a share of the torch scores' spread (plus 1, so that
#: a model giving every pair nearly the same score is not held to a vanishing tolerance).
MAX_SCORE_GAP = {"onnx": 0.005, "onnx-int8": 0.1}


class OnnxExportError(Exception):
    """The export, the quantization or the check against torch failed (the message says which)."""


@dataclass
class RuntimeState:
    """The runtime a role's encoder uses (or will use), and why: what --check and the status tab show."""

    setting: str  # the setting's value: auto, torch, torch-bf16, onnx or onnx-int8
    runtime: str  # what runs: torch, torch-bf16, onnx or onnx-int8
    detail: str = ""  # "exported 2026-12-01", "onnx-int8 export failed: ...", "exported on first load"
    path: str | None = None  # the ONNX file in use
    fallback: bool = False  # an ONNX runtime was wanted but torch runs

    def __str__(self) -> str:
        return f"{self.runtime} ({self.detail})" if self.detail else self.runtime

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "summary": str(self)}


# ---------------------------------------------------------------- which runtime

def runtime_setting(settings: Settings, role: Role) -> str:
    """The role's runtime setting (auto, torch, torch-bf16, onnx, onnx-int8); torch for a role without one."""
    return str(getattr(settings, role.runtime_setting.lower())) if role.runtime_setting else "torch"


def missing_packages() -> list[str]:
    """The packages an ONNX runtime needs that are not installed (found without importing them)."""
    return [name for name in PACKAGES if importlib.util.find_spec(name) is None]


def wanted_runtime(settings: Settings, role: Role, device: str) -> tuple[str, str]:
    """The runtime the settings ask for on `device`, and a note on why (`auto`'s choice, or a warning).

    `auto` follows the measurements in precision.py: torch-bf16 with AMX, else onnx-int8 (torch-bf16
    when ONNX is not installed and the CPU has AVX512-BF16)."""
    from askany.models.precision import AUTO_BF16_NOTES, NO_BF16_NOTE, cpu_bf16

    setting = runtime_setting(settings, role)
    if setting == "torch-bf16" and device == "cpu" and cpu_bf16() is None:
        return setting, NO_BF16_NOTE
    if setting != "auto":
        return setting, ""
    if device != "cpu":
        return "torch", f"auto on {device}"
    kind = cpu_bf16()
    if kind == "amx":
        return "torch-bf16", AUTO_BF16_NOTES[kind]
    missing = missing_packages()
    if missing:
        need = f"onnx-int8 needs {', '.join(missing)} (pip install {' '.join(missing)})"
        return ("torch-bf16", f"{AUTO_BF16_NOTES[kind]}; {need}") if kind else ("torch", f"auto: {need}")
    return "onnx-int8", ""


# ---------------------------------------------------------------- the cache

def fingerprint(folder: Path) -> str:
    """A key of the folder's files (names, sizes, modification times) and the export recipe."""
    entries = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            stat = path.stat()
            entries.append((relative.as_posix(), stat.st_size, stat.st_mtime_ns))
    return hashlib.sha256(json.dumps([RECIPE, entries]).encode()).hexdigest()[:16]


def cache_roots(settings: Settings, folder: Path) -> list[Path]:
    """Where exports of `folder` may be kept: beside it, then DATA_DIR/onnx (the first writable is used)."""
    return [folder.resolve().parent / CACHE_DIR, Path(settings.data_dir).resolve() / "onnx"]


def _writable_root(settings: Settings, folder: Path) -> Path:
    for root in cache_roots(settings, folder):
        probe = root if root.exists() else root.parent
        if os.access(probe, os.W_OK):
            return root
    raise OnnxExportError(f"no writable place for the export ({' or '.join(map(str, cache_roots(settings, folder)))})")


def _entry_name(folder: Path, runtime: str, key: str) -> str:
    return f"{folder.name}-{runtime}-{key}"


def find_export(settings: Settings, folder: Path, runtime: str, key: str | None = None) -> tuple[Path | None,
                                                                                                  dict | None]:
    """A complete export of `folder` for `runtime` (its folder and record), or a recorded failure."""
    key = key or fingerprint(folder)
    name = _entry_name(folder, runtime, key)
    for root in cache_roots(settings, folder):
        record = read_json(root / name / RECORD)
        if isinstance(record, dict) and (root / name / ONNX_FILE).is_file():
            return root / name, record
        failed = read_json(root / f"{name}.failed.json")
        if isinstance(failed, dict):
            return None, failed
    return None, None


def _device_or_cpu(settings: Settings) -> str:
    """The device models would load on; cpu when DEVICE is wrong (that is reported on its own line)."""
    from askany.models.loaders import choose_device

    try:
        return choose_device(settings)
    except Exception:  # noqa: BLE001 - the device problem is reported on its own line
        return "cpu"


def runtime_status(settings: Settings, role: Role, folder: Path | None) -> RuntimeState:
    """What --check shows for a local encoder role, without loading anything (the folder's cache is read)."""
    setting = runtime_setting(settings, role)
    runtime, note = wanted_runtime(settings, role, _device_or_cpu(settings))
    if runtime in TORCH_RUNTIMES:
        return RuntimeState(setting, runtime, note, fallback=setting != "torch" and "needs" in note)
    missing = missing_packages()
    if missing:
        return RuntimeState(setting, "torch", f"{runtime} needs {', '.join(missing)}: pip install "
                                              f"{' '.join(missing)}", fallback=True)
    if folder is None or not folder.is_dir():
        return RuntimeState(setting, runtime, "exported on first load")
    found, record = find_export(settings, folder, runtime)
    if found is not None and record is not None:
        return RuntimeState(setting, runtime, f"exported {str(record.get('exported', ''))[:10]}",
                            str(found / ONNX_FILE))
    if record is not None:
        return RuntimeState(setting, "torch", f"{runtime} export failed: {record.get('error')}", fallback=True)
    return RuntimeState(setting, runtime, "exported on first load")


def llm_runtime_status(settings: Settings) -> RuntimeState:
    """What --check shows for the local LLM: the dtype LLM_DTYPE gives on this device, and why."""
    from askany.models.precision import llm_dtype

    name, note = llm_dtype(settings.llm_dtype, _device_or_cpu(settings))
    return RuntimeState(settings.llm_dtype, name, note)


# ---------------------------------------------------------------- loading

def apply_runtime(settings: Settings, role: Role, folder: Path, model: Any, device: str) -> Any:
    """Put `model` (a SentenceTransformer or CrossEncoder loaded with torch) on the runtime the settings
    ask for; on any failure keep torch and say so once. The state is `model.askany_runtime`."""
    setting = runtime_setting(settings, role)
    runtime, note = wanted_runtime(settings, role, device)
    if runtime == "torch-bf16":
        try:
            return _use_bf16(model, setting, note)
        except Exception as error:  # noqa: BLE001 - e.g. no bf16 on this MPS: fp32 keeps working
            model.float()
            reason = first_line(error)[:300]
            model.askany_runtime = RuntimeState(setting, "torch", f"torch-bf16 failed: {reason}", fallback=True)
            log.warning("The %s model stays in fp32: bf16 could not be used (%s); set %s=torch to silence this",
                        role.name, reason, role.runtime_setting)
            return model
    if runtime == "torch":
        model.askany_runtime = RuntimeState(setting, "torch", note, fallback="needs" in note)
        return model
    try:
        state = _use_onnx(settings, folder, model, runtime)
    except Exception as error:  # noqa: BLE001 - any failure keeps the torch model working
        reason = first_line(error)[:500]
        state = RuntimeState(setting, "torch", f"{runtime} export failed: {reason}", fallback=True)
        log.warning("The %s model stays on torch: %s could not be used (%s); set %s=torch to silence this",
                    role.name, runtime, reason, role.runtime_setting)
    state.setting = setting
    model.askany_runtime = state
    return model


def _use_bf16(model: Any, setting: str, note: str) -> Any:
    """Cast the loaded model to bf16 (sentence-transformers still hands back float32 vectors and scores)."""
    import torch

    model.to(torch.bfloat16)
    model.askany_runtime = RuntimeState(setting, "torch-bf16", note)
    return model


def _use_onnx(settings: Settings, folder: Path, model: Any, runtime: str) -> RuntimeState:
    missing = missing_packages()
    if missing:
        raise OnnxExportError(f"it needs the packages {', '.join(missing)} (pip install {' '.join(missing)})")
    key = fingerprint(folder)
    found, record = find_export(settings, folder, runtime, key)
    if found is None and record is not None:
        raise OnnxExportError(f"{record.get('error')} (recorded {str(record.get('when', ''))[:10]}; delete "
                              f"{record.get('record')} to try again)")
    if found is None:
        found, record = _export_once(settings, folder, model, runtime, key)
    else:
        _swap_in(model, found / ONNX_FILE)
    return RuntimeState(runtime, runtime, f"exported {str(record.get('exported', ''))[:10]}", str(found / ONNX_FILE))


def _export_once(settings: Settings, folder: Path, model: Any, runtime: str, key: str) -> tuple[Path, dict]:
    """Export under a lock (a second process waits, then reuses the first one's export)."""
    from filelock import FileLock

    root = _writable_root(settings, folder)
    root.mkdir(parents=True, exist_ok=True)
    name = _entry_name(folder, runtime, key)
    target = root / name
    with FileLock(str(root / f"{folder.name}.lock")):
        record = read_json(target / RECORD)
        if isinstance(record, dict) and (target / ONNX_FILE).is_file():
            _swap_in(model, target / ONNX_FILE)
            return target, record
        for stale in root.glob(f".partial-{folder.name}-*"):  # left by a killed export (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        partial = Path(tempfile.mkdtemp(prefix=f".partial-{folder.name}-", dir=root))
        failed = root / f"{name}.failed.json"
        # Said before it starts: for bge-m3 this is minutes of CPU at a first query or ingestion.
        log.warning("Exporting %s for ONNX Runtime (%s), once: a large model takes a few minutes and several "
                    "GB of memory (EMBEDDING_RUNTIME or RERANKER_RUNTIME=torch skips it)", folder, runtime)
        try:
            fp32_found = find_export(settings, folder, "onnx", key)[0] if runtime == "onnx-int8" else None
            record = _export(folder, model, runtime, partial, fp32_found and fp32_found / ONNX_FILE)
            write_json(partial / RECORD, record)
            partial.rename(target)
        except OnnxExportError as error:
            write_json(failed, {"error": str(error), "when": now(), "record": str(failed), "source": str(folder)})
            raise
        except Exception as error:  # noqa: BLE001 - the exporter raises anything; record it as a failure
            write_json(failed, {"error": first_line(error)[:300], "when": now(), "record": str(failed),
                                "source": str(folder)})
            raise OnnxExportError(first_line(error)[:300]) from error  # shown as "<runtime> export failed: ..."
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    log.info("Exported %s to %s (%s) in %.0f s", folder, target, runtime, record["seconds"])
    return target, record


def _export(folder: Path, model: Any, runtime: str, out: Path, fp32_export: Path | None) -> dict[str, Any]:
    """Export `model`'s transformer into `out/model.onnx`, check it against torch and leave it swapped in.
    For int8, `fp32_export` is a cached fp32 export of the same folder to quantize, if there is one."""
    started = time.monotonic()
    cross = _is_cross_encoder(model)
    reference = _probe(model, cross)
    fp32 = out / "fp32" / ONNX_FILE
    if runtime == "onnx-int8" and fp32_export is not None:  # the fp32 export is quantized, not made again
        agreement, kept = _quantize_checked(model, cross, reference, fp32_export, out / ONNX_FILE)
    elif runtime == "onnx-int8":
        fp32.parent.mkdir()
        _torch_export(model, cross, fp32)
        agreement, kept = _quantize_checked(model, cross, reference, fp32, out / ONNX_FILE)
        shutil.rmtree(fp32.parent)
    else:
        fp32.parent.mkdir()
        _torch_export(model, cross, fp32)
        for file in fp32.parent.iterdir():
            file.rename(out / file.name)
        fp32.parent.rmdir()
        agreement, kept = _check(model, cross, reference, out / ONNX_FILE, runtime), None
    import onnxruntime
    import torch

    return {"runtime": runtime, "recipe": RECIPE, "exported": now(), "source": str(folder),
            "seconds": round(time.monotonic() - started, 1), "check": agreement, "kept_fp32": kept,
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


def _check(model: Any, cross: bool, reference: Any, path: Path, runtime: str) -> dict[str, Any]:
    """Swap the ONNX model at `path` in and compare it with torch; torch again (and raise) when it disagrees."""
    original = _swap_in(model, path)
    agreement = _agreement(reference, _probe(model, cross), cross, runtime)
    if not agreement["ok"]:
        model[0].model = original
        raise OnnxExportError(f"the {runtime} model disagrees with torch on the check texts ({agreement['what']})")
    return agreement


def _quantize_checked(model: Any, cross: bool, reference: Any, fp32: Path, target: Path) -> tuple[dict, str]:
    """int8 with the first FFN_DOWN_FP32 feed-forward output projections kept in fp32; when that disagrees
    with torch, once more with every one of them in fp32 (slower, closer)."""
    downs = _ffn_down_projections(fp32, model[0].model.config.intermediate_size)
    attempts = [(f"first {min(FFN_DOWN_FP32, len(downs))} of {len(downs)} FFN output projections",
                 downs[:FFN_DOWN_FP32]), (f"all {len(downs)} FFN output projections", downs)]
    for number, (kept, names) in enumerate(attempts):
        _quantize(fp32, target, names)
        try:
            return _check(model, cross, reference, target, "onnx-int8"), kept
        except OnnxExportError:
            if number == len(attempts) - 1 or not downs:
                raise
            log.info("int8 with the %s in fp32 disagrees with torch; trying with all of them", kept)
    raise AssertionError("unreachable")


def _is_cross_encoder(model: Any) -> bool:
    from sentence_transformers import CrossEncoder

    return isinstance(model, CrossEncoder)


def _probe(model: Any, cross: bool) -> Any:
    """The model's output on the check texts, as callers get it (vectors, or reranker scores)."""
    import numpy as np

    if cross:
        pairs = [(question, text) for question in CHECK_QUESTIONS for text in CHECK_TEXTS]
        return np.asarray(model.predict(pairs, batch_size=4, show_progress_bar=False), dtype=np.float64)
    return model.encode(list(CHECK_TEXTS), batch_size=4, normalize_embeddings=True, convert_to_numpy=True,
                        show_progress_bar=False).astype(np.float64)


def _agreement(reference: Any, got: Any, cross: bool, runtime: str) -> dict[str, Any]:
    import numpy as np

    if cross:
        gap = float(np.max(np.abs(reference - got)))
        allowed = MAX_SCORE_GAP[runtime] * (float(np.ptp(reference)) + 1.0)
        return {"ok": gap <= allowed, "max_score_gap": round(gap, 5), "allowed": round(allowed, 5),
                "what": f"largest score difference {gap:.4f}, allowed {allowed:.4f}"}
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1)
    cosine = np.sum(reference * got, axis=1) / np.maximum(norms, 1e-12)
    least = float(cosine.min())
    mean = float(cosine.mean())
    return {"ok": least >= MIN_COSINE[runtime] and mean >= MIN_MEAN_COSINE[runtime],
            "min_cosine": round(least, 5), "mean_cosine": round(mean, 5),
            "what": f"cosine mean {mean:.4f} and least {least:.4f}, needed {MIN_MEAN_COSINE[runtime]} and "
                    f"{MIN_COSINE[runtime]}"}


def _torch_export(model: Any, cross: bool, path: Path) -> None:
    """torch.onnx.export of the transformer alone, batch and length dynamic."""
    import io

    import torch

    transformer = model[0]
    hf_model = transformer.model
    output = "logits" if cross else "last_hidden_state"
    sample = transformer.tokenizer(list(CHECK_TEXTS[:2]), padding=True, return_tensors="pt")
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample]

    class Traced(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = hf_model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
            given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return getattr(self.inner(**{name: given[name] for name in names}, return_dict=True), output)

    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    shapes = {name: {0: batch, 1: sequence} for name in names}
    device = next(hf_model.parameters()).device
    # Eager attention exports as MatMul, Add (the mask) and Softmax; torch's SDPA decomposes into the same
    # plus two Where and an IsNaN over every (batch, head, token, token) score, 17 % of int8 run time.
    attention = getattr(hf_model.config, "_attn_implementation", None)
    settable = attention not in (None, "eager") and hasattr(hf_model, "set_attn_implementation")
    if settable:
        hf_model.set_attn_implementation("eager")
    # The exporter prints its steps and warns about torch internals: neither is the user's business.
    try:
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), \
                _quiet("torch.onnx"):
            warnings.simplefilter("ignore")
            torch.onnx.export(Traced().eval(), tuple(sample[name].to(device) for name in names), str(path),
                              input_names=names, output_names=[output], dynamic_shapes=shapes, opset_version=18,
                              dynamo=True, external_data=True, verbose=False)
    finally:
        if settable:
            hf_model.set_attn_implementation(attention)


def _ffn_down_projections(path: Path, intermediate_size: int) -> list[str]:
    """The feed-forward output projections (MatMuls whose constant weight has `intermediate_size` rows),
    in layer order: their inputs, the GELU outputs, have the outliers that int8 handles worst."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {item.name: list(item.dims) for item in graph.initializer}
    return [node.name for node in graph.node if node.op_type == "MatMul"
            and any(shapes.get(name, [0])[0] == intermediate_size and len(shapes.get(name, [])) == 2
                    for name in node.input[1:])]


def _quantize(source: Path, target: Path, keep_fp32: list[str]) -> None:
    """Dynamic int8 quantization of the MatMul weights, per output channel (activations are quantized
    per batch at run time), except the nodes in `keep_fp32`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet(None):  # the quantizer logs every tensor at INFO, and a hint at WARNING, on the root logger
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=keep_fp32,
                         use_external_data_format=False)


@contextlib.contextmanager
def _quiet(name: str | None) -> Iterator[None]:
    """Only errors from the logger `name` (None: the root logger) inside the block."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _swap_in(model: Any, path: Path) -> Any:
    """Replace the transformer inside `model` by an onnxruntime session on `path` (same inputs, same
    output name, so sentence-transformers' Transformer module runs it unchanged); return the torch model."""
    import onnxruntime
    import torch

    transformer = model[0]
    original = transformer.model
    output = "logits" if _is_cross_encoder(model) else "last_hidden_state"
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = [item.name for item in session.get_inputs()]

    class OnnxModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = original.config  # the embedding dimension and max length are read from it
            self.session = session
            self.path = path

        @property
        def device(self) -> torch.device:
            return torch.device("cpu")

        def forward(self, **features: Any) -> dict[str, torch.Tensor]:
            feeds = {name: features[name].detach().cpu().numpy() for name in inputs}
            return {output: torch.from_numpy(session.run([output], feeds)[0])}

    transformer.model = OnnxModel()
    return original
