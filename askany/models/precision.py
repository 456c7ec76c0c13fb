"""Float precision on this machine: which bf16 the CPU computes, and what `auto` makes of it.

Measured with the real architectures and random weights (docs/cpu-speed.md), torch 2.13, 2 cores:

- AMX (Intel Sapphire Rapids on): bf16 embeds 2.13x and reranks 2.45x as fast as fp32 and beats
  onnxruntime int8 (1.9x); Qwen3-0.6B reads a 2,300-token prompt 2.7x and decodes after it 1.35x
  as fast. `auto`: torch-bf16 encoders, bf16 LLM.
- AVX512-BF16 without AMX (AMD Zen 4, Intel Cooper Lake): bf16 is 2.1x fp32 for both encoders,
  but onnxruntime int8 (AVX512-VNNI) is faster still (2.77x / 2.63x); Qwen3 reads the prompt 1.85x
  as fast and decodes 0.93x. `auto`: onnx-int8 encoders (torch-bf16 when ONNX is not installed),
  bf16 LLM (the first answer text comes 10 s sooner; 512 tokens decode 7 % slower).
- Neither: bf16 is emulated and slower than fp32. `auto`: onnx-int8 encoders, fp32 LLM.

bf16 is the precision these models were trained and published in, and what the GPU path runs; the
mean cosine of bf16 to fp32 vectors is 1.000. Read from /proc/cpuinfo so that `--check` can say
what runs without importing torch.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

BF16Kind = Literal["amx", "avx512", None]

#: The CPU flags (Linux /proc/cpuinfo) of bf16 matrix units and of bf16 vector instructions.
AMX_BF16_FLAG = "amx_bf16"
AVX512_BF16_FLAG = "avx512_bf16"
#: What `auto` says when it chose bf16, per kind; and when a bf16 setting meets a CPU without it.
AUTO_BF16_NOTES = {"amx": "auto: the CPU computes bf16 (AMX)",
                   "avx512": "auto: the CPU computes bf16 (AVX512-BF16)"}
NO_BF16_NOTE = "this CPU has no bf16 instructions: slower than fp32"


def bf16_kind(flags: set[str]) -> BF16Kind:
    """The bf16 a CPU with these /proc/cpuinfo flags computes: "amx", "avx512" or None."""
    if AMX_BF16_FLAG in flags:
        return "amx"
    return "avx512" if AVX512_BF16_FLAG in flags else None


@functools.cache
def cpu_bf16() -> BF16Kind:
    """This CPU's bf16_kind; None also when unknown (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return bf16_kind(set(line.partition(":")[2].split()))
    return None


def llm_dtype(setting: str, device: str) -> tuple[str, str]:
    """The local LLM's dtype name (a torch attribute) for LLM_DTYPE on `device`, and a note on why."""
    if setting != "auto":
        slow = device == "cpu" and setting != "float32" and cpu_bf16() is None
        return setting, NO_BF16_NOTE if slow else ""
    if device == "cuda":
        import torch

        return ("bfloat16" if torch.cuda.is_bf16_supported() else "float16"), "auto on cuda"
    if device == "mps":
        return "float16", "auto on mps"
    kind = cpu_bf16()
    if kind is not None:
        return "bfloat16", AUTO_BF16_NOTES[kind]
    return "float32", "auto: no bf16 instructions on this CPU"
