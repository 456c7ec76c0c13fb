"""CLI start-up: `python -m askany.main --query-text ...` in a new process, split at the first model load.

    python bench/startup.py            # ~1 min: tiny models, the sample documents, 5 runs

The sample documents are ingested once through the CLI into a fresh data folder; then each run
starts the CLI in a new process with a probe that records, from the probe's first line, when the
first model load begins (everything before it is imports, settings and the database: the
embedded PostgreSQL started or reused, the schema checked) and when the process ends. The
interpreter's own start (`python -c pass`) is measured alongside and added. Tiny models and
LLM_BACKEND=none keep what follows the first load short; it is reported, but start-up is the figure.
Results: stdout (table) and bench/results/startup.json, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402 - sets the offline environment before transformers is imported

QUESTION = "如何回滚 Kubernetes 的 Deployment？"
# Runs the CLI as `python -m askany.main` would, after wrapping every model loader so the moment
# the first one starts is known; prints the marks as JSON on stderr's last line.
PROBE = """
import atexit, json, runpy, sys, time
started = time.perf_counter()
marks = {}
import askany.models.registry as registry
def wrap(key, load):
    def timed(settings):
        marks.setdefault("first_model_s", time.perf_counter() - started)
        marks.setdefault("first_model", key)
        return load(settings)
    return timed
for key, load in list(registry.LOADERS.items()):
    registry.LOADERS[key] = wrap(key, load)
atexit.register(lambda: print("PROBE " + json.dumps({**marks, "end_s": time.perf_counter() - started}),
                              file=sys.stderr))
sys.argv = ["askany.main", *sys.argv[1:]]
runpy.run_module("askany.main", run_name="__main__", alter_sys=True)
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--models-cache", type=Path, default=common.DEFAULT_MODELS_CACHE)
    parser.add_argument("--output", type=Path, default=None)
    return parser.parse_args()


def one_run(env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE, "--query-text", QUESTION], env=env, capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the CLI failed ({done.returncode}): {done.stderr[-2000:]}")
    line = next((line for line in reversed(done.stderr.splitlines()) if line.startswith("PROBE ")), None)
    if line is None:
        raise SystemExit(f"the probe printed nothing: {done.stderr[-2000:]}")
    marks = json.loads(line.removeprefix("PROBE "))
    if "first_model_s" not in marks:
        raise SystemExit("the CLI answered without loading a model: nothing to split the start-up at")
    return {"wall_s": wall, **marks}


def main() -> None:
    args = parse_args()
    models = {role: common.model_path("tiny", role, args.models_cache) for role in ("embedding", "reranker")}
    machine = common.machine()
    interpreter = []
    for _ in range(args.runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        interpreter.append(time.perf_counter() - started)
    with common.fresh_data_dir() as data_dir:
        env = {**os.environ, "DATA_DIR": str(data_dir), "MODELS_DIR": str(data_dir / "models"),
               "EMBEDDING_MODEL": str(models["embedding"]), "RERANKER_MODEL": str(models["reranker"]),
               "LLM_BACKEND": "none", "DEVICE": "cpu", "PYTHONPATH": str(common.ROOT)}
        common.log("Ingesting the sample documents through the CLI ...")
        subprocess.run([sys.executable, "-m", "askany.main", "--ingest", str(common.ROOT / "ingest" / "samples"),
                        "--no-progress"], env=env, check=True, stdout=subprocess.DEVNULL)
        runs = []
        for number in range(args.runs):
            runs.append(one_run(env))
            common.log(f"run {number + 1}: first model load at {runs[-1]['first_model_s']:.2f} s "
                       f"({runs[-1]['first_model']}), wall {runs[-1]['wall_s']:.2f} s")
        common.stop_server_postgres(data_dir)
    start = common.percentile(interpreter, 50)
    summary = {
        "interpreter_s": start,
        "before_models_s": common.percentile([r["first_model_s"] for r in runs], 50),
        "models_and_answer_s": common.percentile([r["end_s"] - r["first_model_s"] for r in runs], 50),
        "wall_s": common.percentile([r["wall_s"] for r in runs], 50),
    }
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result = {"machine": machine, "runs": runs, "interpreter_runs": interpreter, "p50": summary}
    print(f"\nCLI start-up  {machine['date']}  {machine['cpu']}  {machine['cores']} cores, load avg "
          f"{machine['load_average_at_start'][0]} at start, {machine['load_average_at_end'][0]} at end")
    print(f"python -m askany.main --query-text (tiny models, LLM_BACKEND=none), p50 of {len(runs)} runs:\n")
    print(common.table(["part", "seconds"], [
        ["interpreter start (python -c pass)", summary["interpreter_s"]],
        ["imports, settings, database: before the first model load", summary["before_models_s"]],
        ["start-up = both", summary["interpreter_s"] + summary["before_models_s"]],
        ["models (tiny) and the answer", summary["models_and_answer_s"]],
        ["wall, whole process", summary["wall_s"]],
    ]))
    path = common.write_json("startup.json", result, args.output)
    common.log(f"Wrote {path}")


if __name__ == "__main__":
    main()
