"""The local LLM on a CPU per LLM_DTYPE: prompt prefill and decoding speed, one process, same prompts.

    python bench/llm_dtype.py                        # Qwen3-0.6B architecture, float32 vs bfloat16, ~3 min
    python bench/llm_dtype.py --llm tiny --prompt-tokens 200 --new-tokens 4   # seconds, checks the script

Each dtype is loaded through AskAny's own loader (LLM_DTYPE), warmed up, then timed with greedy
`model.generate`: prefill = one new token from a prompt of --prompt-tokens tokens; decoding = the
extra time of --new-tokens more, per token, at that context (a RAG prompt's). Best of two rounds.
Results: stdout (table) and bench/results/llm_dtype.json, with the load average.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import common

DTYPES = ("float32", "bfloat16")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", default="qwen3-0.6b-random", help="model folder, qwen3-0.6b-random (default) or tiny")
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--prompt-tokens", type=int, default=2300, help="prompt length (default 2300, a RAG prompt)")
    parser.add_argument("--new-tokens", type=int, default=16, help="decoded tokens timed (default 16)")
    parser.add_argument("--models-cache", type=Path, default=common.DEFAULT_MODELS_CACHE)
    parser.add_argument("--output", type=Path, default=None)
    return parser.parse_args()


def generate_seconds(llm: Any, ids: Any, new_tokens: int) -> float:
    import torch

    started = time.perf_counter()
    with torch.inference_mode():
        llm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    return time.perf_counter() - started


def measure(folder: Path, dtype: str, prompt_tokens: int, new_tokens: int) -> dict[str, Any]:
    import torch

    from askany.core.config import load_settings
    from askany.models.registry import load_llm

    settings = load_settings(llm_model=str(folder), llm_dtype=dtype, device="cpu")
    llm = load_llm(settings)
    generator = torch.Generator().manual_seed(0)
    vocab = min(int(llm.model.config.vocab_size), 5000)
    ids = torch.randint(100, vocab, (1, prompt_tokens), generator=generator)
    generate_seconds(llm, ids[:, :16], 2)  # warm-up
    prefill = min(generate_seconds(llm, ids, 1) for _ in range(2))
    longer = min(generate_seconds(llm, ids, 1 + new_tokens) for _ in range(2))
    decode = (longer - prefill) / new_tokens
    result = {"dtype": str(next(llm.model.parameters()).dtype).removeprefix("torch."),
              "prefill_s": round(prefill, 3), "prefill_tokens_per_s": round(prompt_tokens / prefill, 1),
              "decode_ms_per_token": round(decode * 1000, 1)}
    common.log(f"{dtype}: prefill {prefill:.2f} s, decode {decode * 1000:.0f} ms/token "
               f"(load {os.getloadavg()[0]:.2f})")
    return result


def main() -> None:
    args = parse_args()
    folder = common.model_path(args.llm, "llm", args.models_cache)
    machine = common.machine()
    from askany.models.precision import cpu_bf16

    rows = {dtype: measure(folder, dtype, args.prompt_tokens, args.new_tokens) for dtype in args.dtypes.split(",")}
    base = rows.get("float32")
    for row in rows.values():
        row["prefill_vs_float32"] = round(base["prefill_s"] / row["prefill_s"], 2) if base else None
        row["decode_vs_float32"] = round(base["decode_ms_per_token"] / row["decode_ms_per_token"], 2) if base else None
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result = {"machine": machine, "llm": str(folder), "cpu_bf16": cpu_bf16() or "none",
              "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "dtypes": rows}
    print(f"\nLLM dtype  {machine['date']}  {machine['cpu']}  {machine['cores']} cores, torch threads "
          f"{machine['torch_threads']}, bf16: {result['cpu_bf16']}; load avg "
          f"{machine['load_average_at_start'][0]} at start, {machine['load_average_at_end'][0]} at end")
    print(f"{folder.name}: prompt of {args.prompt_tokens} tokens, {args.new_tokens} tokens decoded after it\n")
    print(common.table(["LLM_DTYPE", "prefill s", "tokens/s", "x float32", "decode ms/token", "x float32"],
                       [[name, r["prefill_s"], r["prefill_tokens_per_s"], r["prefill_vs_float32"] or "-",
                         r["decode_ms_per_token"], r["decode_vs_float32"] or "-"] for name, r in rows.items()]))
    path = common.write_json("llm_dtype.json", result, args.output)
    common.log(f"Wrote {path}")


if __name__ == "__main__":
    main()
