"""Models on a server (EMBEDDING_BACKEND / RERANKER_BACKEND / LLM_BACKEND=openai): against a real
AskAny --serve with tiny models for all three roles, and against a stand-in speaking the OpenAI,
Jina and TEI shapes with injected faults. Ingestion completes or stops cleanly with nothing
duplicated, and a re-run finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from askany.context import AskAny
from askany.core.errors import ModelUnavailableError
from askany.models import remote
from askany.retrieval.retriever import Retriever
from askany.service import Service
from askany.service.status import collect_status
from tests.support.api_server import running
from tests.support.fixtures import empty_database
from tests.support.model_standin import ModelStandIn, hashed_vector
from tests.support.snapshots import snapshot

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "ingest" / "samples"
CMRC_DOCS = ROOT.parent / "shared" / "eval" / "cmrc2018-trial" / "docs"
QUESTION = "如何回滚发布？"


@pytest.fixture
def standin() -> Iterator[ModelStandIn]:
    server = ModelStandIn(dimension=48)
    yield server
    server.close()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "BACKOFF_SECONDS", 0.01)


@pytest.fixture
def remote_app(make_app: Callable[..., AskAny], standin: ModelStandIn) -> Callable[..., AskAny]:
    def make(**overrides: object) -> AskAny:
        values: dict[str, object] = {"embedding_backend": "openai", "embedding_api_base": standin.base,
                                     "embedding_api_model": "standin-embed", "embedding_batch_size": 4,
                                     "ingest_group_chunks": 4,
                                     "reranker_backend": "tei", "reranker_api_base": standin.root}
        values.update(overrides)
        app = make_app(**values)
        return app
    return make


def embedding_requests(standin: ModelStandIn) -> list[dict]:
    return [body for path, body in standin.requests if path == "/v1/embeddings"]


def test_ingest_and_search_with_vectors_and_rerank_from_a_server(remote_app, standin: ModelStandIn) -> None:
    app = remote_app(embedding_api_key="sekret", embedding_api_concurrency=3)
    empty_database(app)
    report = Service(app=app).ingest([SAMPLES], kb="remote")
    assert report.chunks_written > 4 and report.vectors_written == report.chunks_written
    assert report.awaiting_vectors == 0 and not report.embedding_note
    bodies = embedding_requests(standin)
    assert all(body["model"] == "standin-embed" and len(body["input"]) <= 4 for body in bodies)
    assert app.store.vector_model() == ("standin-embed", 48)  # the remote model's name is the identity
    assert app.store.has_hnsw_index()  # built once, after the first load
    with app.db.connection() as conn:  # with parallel workers asked for: the heap alone would plan none
        options = conn.execute("SELECT reloptions FROM pg_class WHERE oid = 'chunk_vectors'::regclass").fetchone()[0]
    assert "parallel_workers=8" in options

    # The stored vectors are the server's (normalized); a search uses vectors and TEI's rerank.
    with app.db.connection() as conn:
        text, stored = conn.execute("SELECT c.text, v.embedding FROM chunks c JOIN chunk_vectors v "
                                    "ON v.chunk_id = c.id LIMIT 1").fetchone()
    assert np.allclose(stored.to_numpy(), hashed_vector(text, 48), atol=1e-6)
    result = Retriever(app).retrieve(QUESTION, mode="hybrid", rerank=True)
    assert result.hits and not result.notices
    assert all("vector" in hit.stages or "keyword" in hit.stages for hit in result.hits)
    assert "rerank" in result.hits[0].stages
    assert any(path == "/rerank" and body["query"] == QUESTION for path, body in standin.requests)


def test_429_500_and_dropped_connections_are_retried(remote_app, standin: ModelStandIn) -> None:
    app = remote_app()
    empty_database(app)
    standin.faults = ["429", "500", "drop", None, "503"]
    report = Service(app=app).ingest([SAMPLES], kb="retried")
    assert report.vectors_written == report.chunks_written and report.awaiting_vectors == 0


def test_a_server_that_goes_away_mid_ingestion_leaves_a_state_the_next_run_completes(
        remote_app, standin: ModelStandIn, make_app: Callable[..., AskAny]) -> None:
    # The state one uninterrupted run leaves, to compare with.
    app = remote_app()
    empty_database(app)
    Service(app=app).ingest([SAMPLES], kb="gone")
    complete = snapshot(app, "gone")

    empty_database(app)
    app = remote_app(embedding_api_retries=1)
    standin.requests.clear()
    standin.fail_after(3, "drop")  # the dimension probe and two batches, then nothing answers
    report = Service(app=app).ingest([SAMPLES], kb="gone")
    assert report.chunks_written == len(complete["chunks"])  # every chunk stored, searchable by keyword
    assert 0 < report.awaiting_vectors < report.chunks_written
    assert report.embedding_note.code == "vectors_stopped" and "EMBEDDING_API_BASE" in report.embedding_note
    hits = Retriever(app).retrieve(QUESTION, mode="hybrid", rerank=False)
    assert hits.hits and any(notice.code == "vector_unavailable" for notice in hits.notices)

    standin.heal()
    again = Service(app=remote_app()).ingest([SAMPLES], kb="gone")
    assert again.count("unchanged") == len(again.results) and again.awaiting_vectors == 0
    assert again.vectors_written == report.awaiting_vectors
    assert snapshot(app, "gone") == complete  # nothing duplicated, nothing lost


@pytest.mark.parametrize(("fault", "words"), [
    ("401", "EMBEDDING_API_KEY"),
    ("dimension", "24-dimensional vectors after 48-dimensional"),
])
def test_a_refusal_or_a_wrong_dimension_stops_vectors_with_one_sentence(
        remote_app, standin: ModelStandIn, fault: str, words: str) -> None:
    app = remote_app()
    empty_database(app)
    standin.fail_after(2, fault)
    report = Service(app=app).ingest([SAMPLES], kb="refused")
    assert report.awaiting_vectors > 0 and words in report.embedding_note
    assert "\n" not in report.embedding_note and "Traceback" not in report.embedding_note
    inputs = [tuple(body["input"]) for body in embedding_requests(standin)]
    assert len(inputs) == len(set(inputs))  # a refusal is not tried again


def test_a_server_without_base64_is_asked_for_floats(make_app, standin: ModelStandIn) -> None:
    standin.refuse_base64 = True
    app = make_app(embedding_backend="openai", embedding_api_base=standin.base)
    vectors = app.models.embedding().encode(["回滚", "备份"])
    assert np.allclose(vectors, [hashed_vector("回滚", 48), hashed_vector("备份", 48)], atol=1e-6)
    assert [body["encoding_format"] for _, body in standin.requests] == ["base64", "float"]
    app.models.embedding().encode(["再来"])
    assert standin.requests[-1][1]["encoding_format"] == "float"  # remembered


def test_a_server_with_a_smaller_batch_limit_gets_smaller_batches(remote_app, standin: ModelStandIn) -> None:
    standin.max_batch = 3  # TEI answers 413 above its --max-client-batch-size
    app = remote_app(embedding_batch_size=8, ingest_group_chunks=16)
    empty_database(app)
    report = Service(app=app).ingest([SAMPLES], kb="limited")
    assert report.vectors_written == report.chunks_written and report.awaiting_vectors == 0
    sizes = [len(body["input"]) for body in embedding_requests(standin)]
    refused = [index for index, size in enumerate(sizes) if size > 3]
    assert refused and len(refused) <= 4, sizes  # learnt once (8 -> 4 -> 2), not again for every batch
    assert max(sizes[refused[-1] + 1:]) <= 3, sizes
    one = ModelStandIn(dimension=48, max_batch=0)  # not even one text: the refusal is the answer
    try:
        with pytest.raises(ModelUnavailableError, match="HTTP 413 .*--max-client-batch-size"):
            remote_app(embedding_api_base=one.base).models.embedding().encode(["一", "二"])
    finally:
        one.close()


def test_a_timeout_is_retried_then_named(remote_app, standin: ModelStandIn) -> None:
    standin.slow_seconds = 1.0
    app = remote_app(embedding_api_timeout_seconds=0.2, embedding_api_retries=1)
    standin.faults = ["slow", "slow"]
    with pytest.raises(ModelUnavailableError, match=r"did not answer within 0.2 s \(EMBEDDING_API_TIMEOUT_SECONDS\)"
                                                    r" \(2 tries\)"):
        app.models.embedding().encode(["你好"])
    assert app.models.embedding().encode(["你好"]).shape == (1, 48)  # the server answers again: so does AskAny


def test_a_query_degrades_to_the_channels_that_answer(remote_app, standin: ModelStandIn) -> None:
    app = remote_app(reranker_api_retries=0, embedding_api_retries=0)
    empty_database(app)
    Service(app=app).ingest([SAMPLES], kb="degrade")
    standin.fail_after(0, "500")  # both servers' answers fail from now on
    result = Retriever(app).retrieve(QUESTION, mode="hybrid", rerank=True)
    assert result.hits and all("keyword" in hit.stages for hit in result.hits)
    codes = {notice.code for notice in result.notices}
    assert codes == {"vector_unavailable", "rerank_unavailable"}, result.notices
    assert all("HTTP 500" in notice for notice in result.notices)
    standin.heal()  # nothing is remembered as broken: the next question uses both again
    result = Retriever(app).retrieve("数据库如何备份", mode="hybrid", rerank=True)
    assert not result.notices and "rerank" in result.hits[0].stages


def test_rerank_in_the_jina_shape_with_passages_cut_to_the_limit(remote_app, standin: ModelStandIn) -> None:
    app = remote_app(reranker_backend="openai", reranker_api_base=standin.base, reranker_api_model="standin-rr",
                     rerank_max_length=20)
    scores = app.models.reranker().predict([("回滚", "如何回滚发布" * 10), ("回滚", "数据库备份")])
    assert scores[0] > scores[1]
    (path, body), = standin.requests
    assert path == "/v1/rerank" and body["model"] == "standin-rr" and body["top_n"] == 2
    assert all(len(text) <= 20 for text in body["documents"])  # no tokenizer on disk: cut by characters


def test_check_shows_each_remote_role_reachable_or_not(remote_app, standin: ModelStandIn) -> None:
    app = remote_app()
    status = collect_status(app.settings, db_probe=False)
    embedding = status["models"]["embedding"]
    assert embedding["ok"] and embedding["remote"]["dimension"] == 48 and embedding["name"] == "standin-embed"
    assert status["models"]["reranker"]["ok"]
    standin.close()
    status = collect_status(app.settings, db_probe=False)
    assert not status["models"]["embedding"]["ok"] and "cannot be reached" in status["models"]["embedding"]["problem"]
    assert "embedding" in status["missing_required"] and not status["ok"]


def test_a_real_askany_server_serves_all_three_roles(
        make_app: Callable[..., AskAny], tiny_embedding_dir: Path, tiny_reranker_dir: Path, tiny_llm_dir: Path) -> None:
    server_app = make_app(embedding_model=str(tiny_embedding_dir), reranker_model=str(tiny_reranker_dir),
                          llm_backend="transformers", llm_model=str(tiny_llm_dir), llm_max_new_tokens=8)
    with running(Service(app=server_app)) as base:
        llm_id = tiny_llm_dir.name
        client = make_app(embedding_model=str(tiny_embedding_dir), embedding_backend="openai",
                          embedding_api_base=base + "/v1", reranker_backend="tei", reranker_api_base=base,
                          llm_backend="openai", llm_api_base=base + "/v1", llm_api_model=llm_id)
        empty_database(client)
        service = Service(app=client)
        report = service.ingest([SAMPLES], kb="served")
        assert report.vectors_written == report.chunks_written > 0
        # Same model on both sides: the identity is the same, and so are the vectors.
        texts = ["如何回滚发布？", "数据库每天凌晨备份"]
        local = server_app.models.embedding().encode(texts, normalize_embeddings=True)
        assert np.allclose(client.models.embedding().encode(texts), local, atol=1e-5)
        pairs = [(QUESTION, text) for text in texts]
        assert np.allclose(client.models.reranker().predict(pairs), server_app.models.reranker().predict(pairs),
                           atol=1e-5)
        result = service.ask(QUESTION)
        assert result.sources and not [n for n in result.notices if "unavailable" in n]
        status = collect_status(client.settings, db_probe=False)
        assert all(status["models"][role]["ok"] for role in ("embedding", "reranker", "llm")), status["models"]


@pytest.mark.slow
def test_two_ingestion_workers_on_one_database_split_the_files(make_app, pg_data_dir: Path, tmp_path: Path) -> None:
    """Two CLI processes ingesting the same folder with vectors from one server: each file is parsed
    and embedded by one of them, and the result is one run's."""
    standin = ModelStandIn(dimension=16, delay_seconds=0.05)
    try:
        settings = {"embedding_backend": "openai", "embedding_api_base": standin.base,
                    "embedding_api_model": "standin-embed", "embedding_batch_size": 8}
        app = make_app(**settings)
        empty_database(app)
        Service(app=app).ingest([CMRC_DOCS], kb="reference")
        expected = snapshot(app, "reference")
        texts_once = sum(len(body["input"]) for body in embedding_requests(standin))
        standin.requests.clear()

        env = {**os.environ, "DATA_DIR": str(pg_data_dir), "MODELS_DIR": str(tmp_path / "models"),
               "LLM_BACKEND": "none", "RERANKER_ENABLED": "false", "INGEST_GROUP_CHUNKS": "16",
               # Parsing here, a file is claimed at most CLAIM_BATCH files ahead of its turn (worker
               # processes read ~700 files ahead, all of this folder): both runs then get a share.
               "INGEST_WORKERS": "0",
               "EMBEDDING_API_CONCURRENCY": "1", **{key.upper(): str(value) for key, value in settings.items()}}
        command = [sys.executable, "-m", "askany.main", "--ingest", str(CMRC_DOCS), "--kb", "split", "--json",
                   "--no-progress"]
        runs = [subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for _ in range(2)]
        outcomes = [run.communicate(timeout=300) for run in runs]
    finally:
        standin.close()
    import json

    reports = []
    for run, (stdout, stderr) in zip(runs, outcomes, strict=True):
        assert run.returncode == 0 and "Traceback" not in stderr, stderr
        reports.append(json.loads(stdout))
    stored = [report["files"]["new"] + report["files"]["changed"] for report in reports]
    assert sum(stored) == 256 and min(stored) > 0, reports  # both worked, each file stored by one
    assert sum(report["files"]["claimed"] for report in reports) > 0
    embedded = sum(len(body["input"]) for body in embedding_requests(standin))
    assert embedded <= texts_once + 2, "no chunk embedded twice (one dimension probe per process)"
    final = snapshot(app, "split")
    assert final["documents"] == expected["documents"] and final["vectors"] == expected["vectors"]
    assert final["terms"] == expected["terms"]
    assert sorted(row[1:] for row in final["chunks"]) == sorted(row[1:] for row in expected["chunks"])


def test_an_interrupted_ingestion_does_not_wait_for_a_slow_server(empty_db: None, pg_data_dir: Path,
                                                                  tmp_path: Path) -> None:
    """SIGTERM (or Ctrl-C) while batches wait on a server that takes a minute ends the run at once."""
    standin = ModelStandIn(dimension=16, slow_seconds=60)
    standin.fail_after(1, "slow")  # the dimension probe is answered, then every batch takes a minute
    try:
        env = {**os.environ, "DATA_DIR": str(pg_data_dir), "MODELS_DIR": str(tmp_path / "models"),
               "LLM_BACKEND": "none", "RERANKER_ENABLED": "false", "EMBEDDING_BACKEND": "openai",
               "EMBEDDING_API_BASE": standin.base, "EMBEDDING_API_MODEL": "standin-embed", "EMBEDDING_BATCH_SIZE": "2"}
        run = subprocess.Popen([sys.executable, "-m", "askany.main", "--ingest", str(CMRC_DOCS), "--kb", "slow",
                                "--no-progress"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(standin.requests) < 3 and time.monotonic() < deadline:  # the probe, then batches in flight
            time.sleep(0.05)
        assert len(standin.requests) >= 3, run.communicate(timeout=5)
        run.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _, stderr = run.communicate(timeout=30)
    finally:
        standin.close()
    assert time.monotonic() - started < 10
    assert run.returncode == 130 and "Interrupted" in stderr and "Traceback" not in stderr
