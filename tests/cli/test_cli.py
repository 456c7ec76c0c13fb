"""The command line as a user types it: --check, --ingest, --query (text and --json), --check-db, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "ingest" / "samples"
pytestmark = pytest.mark.usefixtures("empty_db")


def test_check_reports_every_component(run_cli, tiny_embedding_dir) -> None:
    status, out, _ = run_cli("--check", "--json", EMBEDDING_MODEL=str(tiny_embedding_dir),
                             RERANKER_ENABLED="false")
    report = json.loads(out)
    assert report["database"]["ok"] and report["database"]["pgvector"] == "0.8.2"
    assert report["models"]["embedding"]["ok"] and report["models"]["embedding"]["source"] == "local folder"
    assert report["tokenizer"] == "jieba" and report["device"] == "cpu"
    assert "DATA_DIR" in report["settings"]["from_environment"]
    assert status == 0  # LLM_BACKEND=none and the reranker off: nothing required is missing

    status, out, _ = run_cli("--check", RERANKER_ENABLED="true")
    assert status == 1 and "✗ reranker" in out and "RERANKER_MODEL points to" in out


def test_ingest_then_query_as_text_and_json(run_cli) -> None:
    status, out, _ = run_cli("--ingest", str(SAMPLES), "--kb", "cli", "--tags", "运维,文档", "--no-progress")
    assert status == 0 and "Ingestion into knowledge base 'cli'" in out and "Done." in out

    status, out, err = run_cli("--query", "--query-text", "如何滚动重启 Deployment？", "--kb", "cli",
                               "--query-type", "DOCS", "--no-rerank")
    assert status == 0 and "kubectl rollout restart" in out and "[1]" in out
    assert "Sources (* = cited)" in out and "k8s-运维手册.md" in out and "Time: keyword" in out
    assert "（摘录自资料，未经大模型生成）" in out and "notice: Vector search unavailable" in err

    status, out, _ = run_cli("--query-text", "VPN 连不上怎么办？", "--mode", "keyword", "--json")
    data = json.loads(out)
    assert status == 0 and data["routed_to"] == "faq" and data["answer_kind"] == "faq"
    assert data["sources"][0]["source"].endswith("常见问题.json") and "keyword" in data["timings"]
    assert {"number", "source", "heading_path", "text", "stages"} <= set(data["sources"][0])

    status, out, _ = run_cli("--check-db", "--json")
    kbs = {kb["kb"]: kb for kb in json.loads(out)["knowledge_bases"]}
    assert kbs["cli"]["documents"] == 4 and kbs["cli"]["faq_files"] == 1


def test_user_errors_are_one_line(run_cli) -> None:
    status, _, err = run_cli("--query-text", "如何重启？")
    assert status == 2 and err.strip() == ("error: The knowledge base is empty; add documents first with: "
                                           "python -m askany.main --ingest PATH")
    status, _, err = run_cli("--query")
    assert status == 2 and "No question given" in err
    status, _, err = run_cli("--ingest", "/no/such/folder", "--no-progress")
    assert status == 1
    status, _, err = run_cli("--eval", "/no/such/queries.jsonl")
    assert status == 2 and "does not exist" in err and "Traceback" not in err


def test_hostile_questions_and_numbers_get_one_line(run_cli, tiny_embedding_dir) -> None:
    models = {"EMBEDDING_MODEL": str(tiny_embedding_dir)}  # the tokenizer is what choked on bad text
    assert run_cli("--ingest", str(SAMPLES), "--kb", "cli", "--no-progress", **models)[0] == 0
    undecodable = os.fsdecode(b"\xff\xfe\xe6\x95\xb0\xe6\x8d\xae\xe5\xba\x93")  # what argv holds for non-UTF-8 bytes
    for question in (undecodable, "数据库\ud800备份"):
        status, _, err = run_cli("--query-text", question, "--kb", "cli", "--no-rerank", **models)
        assert status == 2 and err.startswith("error: The question holds bytes that are not valid UTF-8"), err
    for top_k in ("-5", "0", "100000"):
        status, _, err = run_cli("--query-text", "如何回滚发布？", "--kb", "cli", "--top-k", top_k, **models)
        assert status == 2 and "must be a whole number from 1 to 100" in err and "Traceback" not in err
    status, out, _ = run_cli("--query-text", "数据库\x00备份", "--kb", "cli", "--no-rerank", "--json", **models)
    assert status == 0 and json.loads(out)["sources"]


def test_module_entry_point_runs_offline(pg_data_dir, tmp_path) -> None:
    """`python -m askany.main` in a fresh process: ingest and ask, nothing but loopback used."""
    env = {**os.environ, "DATA_DIR": str(pg_data_dir), "MODELS_DIR": str(tmp_path / "models"),
           "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    ingest = subprocess.run([sys.executable, "-m", "askany.main", "--ingest", str(SAMPLES), "--no-progress"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert ingest.returncode == 0, ingest.stderr
    ask = subprocess.run([sys.executable, "-m", "askany.main", "--query-text", "数据库多久备份一次？"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert ask.returncode == 0, ask.stderr
    assert "数据库备份.txt" in ask.stdout and "--download-models llm" in ask.stderr
