"""Float precision on this machine: bf16 where the CPU computes it natively, fp32 elsewhere on a CPU.

Measured on a 2-core Sapphire Rapids (AMX, AVX512-BF16) with the real architectures and random
weights: the bge-m3 encoder embeds 2.35x and bge-reranker-v2-m3 reranks 2.0x as fast in bf16 as in
fp32 (faster than onnxruntime int8, 1.9x), with a mean cosine of 0.9999 to the fp32 vectors; Qwen3-0.6B
reads a prompt 2.4-2.7x as fast (decoding is 1.2x slower: oneDNN's bf16 kernels are slow for one row).
bf16 is the precision these models were trained and published in, and what the GPU path runs.
On a CPU without bf16 instructions, bf16 is emulated and slower than fp32, so it is not chosen there.

Read from /proc/cpuinfo so that `--check` can say what runs without importing torch.
"""

from __future__ import annotations

import functools
from pathlib import Path

#: CPU flags (Linux /proc/cpuinfo) of instructions that compute bf16 natively.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (x86 AMX or AVX512-BF16); False when unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(BF16_FLAGS & set(line.partition(":")[2].split()))
    return False
