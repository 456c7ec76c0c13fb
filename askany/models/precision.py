"""Float precision on this machine: bf16 where the CPU has AMX, fp32 elsewhere on a CPU.

Measured on a 2-core Sapphire Rapids (AMX) with the real architectures and random weights
(docs/cpu-speed.md): bge-m3 embeds 2.13x and bge-reranker-v2-m3 reranks 2.45x as fast in bf16 as in
fp32 (onnxruntime int8: 1.9x), with a mean cosine of 1.000 to the fp32 vectors; Qwen3-0.6B reads a
2,300-token prompt 2.7x and decodes after it 1.35x as fast (with a short prompt it decodes slower:
oneDNN's bf16 kernels lose at one row). bf16 is the precision these models were trained and
published in, and what the GPU path runs. CPUs with AVX512-BF16 but no AMX (Cooper Lake, Zen 4)
were not measured, and on CPUs without either bf16 is emulated and slower than fp32, so `auto`
chooses bf16 only where AMX is.

Read from /proc/cpuinfo so that `--check` can say what runs without importing torch.
"""

from __future__ import annotations

import functools
from pathlib import Path

#: The CPU flag (Linux /proc/cpuinfo) of the bf16 matrix units the measurements were made on.
AMX_BF16_FLAG = "amx_bf16"
#: What `auto` says when it chose bf16 / when a bf16 setting meets a CPU without AMX.
AUTO_BF16_NOTE = "auto: the CPU computes bf16 (AMX)"
NO_AMX_NOTE = "this CPU has no AMX bf16: slower than fp32"


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU has AMX bf16 units; False when it has not or it is unknown (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return AMX_BF16_FLAG in line.partition(":")[2].split()
    return False


def llm_dtype(setting: str, device: str) -> tuple[str, str]:
    """The local LLM's dtype name (a torch attribute) for LLM_DTYPE on `device`, and a note on why."""
    if setting != "auto":
        slow = device == "cpu" and setting != "float32" and not cpu_has_native_bf16()
        return setting, NO_AMX_NOTE if slow else ""
    if device == "cuda":
        import torch

        return ("bfloat16" if torch.cuda.is_bf16_supported() else "float16"), "auto on cuda"
    if device == "mps":
        return "float16", "auto on mps"
    if cpu_has_native_bf16():
        return "bfloat16", AUTO_BF16_NOTE
    return "float32", "auto: no AMX bf16 on this CPU"
