"""Fault injection: ingestion killed at random moments, then run again, must end as one clean run.

    python bench/faults.py                     # 20 kills over the 256 cmrc2018 documents, tiny embedding model
    python bench/faults.py --kills 4 --docs-limit 60   # a quick check of the script

Every trial ingests the same documents through the CLI (`python -m askany.main --ingest`, its own
process, small commit groups so a kill lands between and inside transactions) into a knowledge base
of its own, and kills either the ingesting process or, every fourth trial, the embedded PostgreSQL
server itself (SIGKILL of the postmaster), at a random moment (seeded): half the trials once the
progress bar has counted a random number of files, half after a random time (start-up and the
final vector pass included). The same command is then
run again until it succeeds (at most three times), and the knowledge base is compared table by
table (documents, chunks, keyword postings, vectors) with a reference run that was never
interrupted. Target: every trial identical, and no re-run prints a traceback.

Results: stdout (table) and bench/results/faults.json, with the load average.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import random
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any

import common

RERUNS = 3


def environment(data_dir: Path, embedding: Path, docs: Path) -> dict[str, str]:
    return {**os.environ, "DATA_DIR": str(data_dir), "MODELS_DIR": str(data_dir / "models"),
            "EMBEDDING_MODEL": str(embedding), "RERANKER_ENABLED": "false", "LLM_BACKEND": "none",
            "INGEST_GROUP_CHUNKS": "8", "DEVICE": "cpu", "PYTHONPATH": str(common.ROOT)}


def ingest_command(docs: Path, kb: str) -> list[str]:
    return [sys.executable, "-m", "askany.main", "--ingest", str(docs), "--kb", kb, "--no-progress"]


def take_snapshot(env: dict[str, str], kb: str) -> dict[str, Any]:
    """The knowledge base, table by table, read by a process of its own (the server may have been killed)."""
    done = subprocess.run([sys.executable, __file__, "--snapshot-of", kb], env=env, capture_output=True,
                          text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"could not read {kb}: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


PROGRESS = re.compile(r"Ingesting into [^:\r\n]*:[^\r\n]*?(\d+)/(\d+) \[")  # not the weights-loading bar


def trial(number: int, env: dict[str, str], docs: Path, data_dir: Path, moment: tuple[str, float], target: str,
          expected: dict[str, Any]) -> dict[str, Any]:
    """One run killed at `moment`: ("seconds", s) after its start, or ("files", n) once its progress
    bar has counted n files (time alone mostly lands in start-up or the final vector pass)."""
    from tests.support.snapshots import differences

    kb = f"trial{number}"
    command = ingest_command(docs, kb)
    started = time.perf_counter()
    # stderr on a pseudo-terminal: the CLI draws its progress bar only for a terminal.
    terminal, their_side = pty.openpty()
    fcntl.ioctl(their_side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))  # 0 columns: no bar drawn
    process = subprocess.Popen(command[:-1], env=env, stdout=subprocess.DEVNULL, stderr=their_side)
    os.close(their_side)
    errors = _Stderr(terminal)
    kind, value = moment
    while process.poll() is None and (time.perf_counter() - started < value if kind == "seconds"
                                      else errors.files_done < value):
        time.sleep(0.02)
    killed = process.poll() is None
    if killed:
        if target == "postgres" and (pid := postmaster_pid(data_dir)) is not None:
            os.kill(pid, signal.SIGKILL)
        else:
            process.send_signal(signal.SIGKILL)
    process.wait(timeout=300)
    first_err = errors.text()
    interrupted_state = take_snapshot(env, kb)
    runs, tracebacks = 0, int("Traceback" in first_err)
    while runs < RERUNS:
        runs += 1
        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        tracebacks += "Traceback" in rerun.stderr
        if rerun.returncode == 0:
            break
    final = take_snapshot(env, kb)
    diff = differences(expected, final)
    last_line = [line for line in re.split(r"[\r\n]+", first_err) if line.strip() and not PROGRESS.search(line)][-1:]
    return {"trial": number, "target": target, "moment": f"{value:g} {kind}",
            "killed": killed,
            "documents_when_killed": len(interrupted_state["documents"]), "reruns": runs,
            "tracebacks": tracebacks, "last_stderr": last_line, "identical": not diff, "differs_in": diff}


class _Stderr:
    """The ingestion's stderr, read from its terminal as it comes: the progress bar's file count, the text."""

    def __init__(self, terminal: int):
        self.files_done = 0
        self._chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._read, args=(terminal,), daemon=True)
        self._thread.start()

    def _read(self, terminal: int) -> None:
        try:
            while chunk := os.read(terminal, 4096):
                self._chunks.append(chunk)
                found = PROGRESS.findall(chunk.decode("utf-8", "replace"))
                if found:
                    self.files_done = int(found[-1][0])
        except OSError:  # EIO: the process has exited and closed its side
            pass
        finally:
            os.close(terminal)

    def text(self) -> str:
        self._thread.join(timeout=10)
        return b"".join(self._chunks).decode("utf-8", "replace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--docs", type=Path, default=common.DEFAULT_DOCS)
    parser.add_argument("--docs-limit", type=int, default=None)
    parser.add_argument("--embedding", default="tiny")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--models-cache", type=Path, default=common.DEFAULT_MODELS_CACHE)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--snapshot-of", help=argparse.SUPPRESS)  # internal: print one kb's snapshot
    args = parser.parse_args()
    if args.snapshot_of:
        return print_snapshot(args.snapshot_of)

    embedding = common.model_path(args.embedding, "embedding", args.models_cache)
    info = common.machine()
    rng = random.Random(args.seed)
    results: list[dict[str, Any]] = []
    files = common.select_docs(args.docs, args.docs_limit)
    with common.fresh_data_dir() as data_dir, common.docs_folder(files) as docs:
        env = environment(data_dir, embedding, docs)
        common.log(f"Reference run: {len(files)} documents, never interrupted ...")
        started = time.perf_counter()
        subprocess.run(ingest_command(docs, "reference"), env=env, check=True, stdout=subprocess.DEVNULL)
        reference_seconds = time.perf_counter() - started
        expected = take_snapshot(env, "reference")
        for number in range(args.kills):
            target = "postgres" if number % 4 == 3 else "ingestion"
            # Half the trials by progress (the middle of storing documents), half by time (start-up, the
            # final vector pass and merges included); each way for both targets.
            moment = (("files", rng.randint(1, len(files) - 1)) if number % 4 in (0, 3)
                      else ("seconds", round(rng.uniform(0.2, reference_seconds * 0.95), 1)))
            common.log(f"Trial {number + 1}/{args.kills}: kill the {target} at {moment[1]:g} {moment[0]} ...")
            results.append(trial(number, env, docs, data_dir, moment, target, expected))
            common.log(f"  {'identical' if results[-1]['identical'] else 'DIFFERENT: ' + str(results[-1]['differs_in'])}"
                       f" after {results[-1]['reruns']} re-run(s)")
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    rows = [[r["trial"], r["target"], r["moment"], "yes" if r["killed"] else "finished first",
             r["documents_when_killed"], r["reruns"], r["tracebacks"], "yes" if r["identical"] else r["differs_in"]]
            for r in results]
    print(common.table(["trial", "killed", "at", "killed?", "docs stored", "re-runs", "tracebacks",
                        "identical"], rows))
    said = sorted({line for r in results if r["killed"] and r["target"] == "postgres" for line in r["last_stderr"]})
    print("what the CLI said when its database was killed: " + (" | ".join(said) or "-"))
    identical = sum(r["identical"] for r in results)
    landed = sum(r["killed"] for r in results)
    clean = all(r["tracebacks"] == 0 for r in results)
    ok = identical == len(results) and clean
    print(f"\nreference run {reference_seconds:.1f} s for {len(files)} documents; {landed} of {len(results)} kills "
          f"landed mid-run; {identical}/{len(results)} identical to the uninterrupted run, "
          f"{sum(r['tracebacks'] for r in results)} tracebacks  [{common.verdict(ok)}]")
    print(f"load average: start {info['load_average_at_start']}, end {info['load_average_at_end']}")
    path = common.write_json("faults.json", {"machine": info, "reference_seconds": round(reference_seconds, 2),
                                             "documents": len(files), "trials": results}, args.output)
    common.log(f"Wrote {path}")
    return 0 if ok else 1


def print_snapshot(kb: str) -> int:
    from askany.context import AskAny
    from tests.support.snapshots import snapshot

    app = AskAny()  # settings from the environment, as the CLI runs read them
    print(json.dumps(snapshot(app, kb), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
