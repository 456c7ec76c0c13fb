"""Batch ingestion end to end: real files, the tiny embedding model, the embedded Postgres."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import docx
import pytest

from askany.cli.main import main
from askany.ingestion.loaders.ocr import ocr_installed
from askany.ingestion.pipeline import Ingestor, ParseTask, file_hash
from askany.storage.store import EmbeddingMismatchError, SearchFilter
from tests.support.snapshots import snapshot

CMRC_DOCS = Path(__file__).resolve().parents[3] / "shared" / "eval" / "cmrc2018-trial" / "docs"
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("empty_db")


def keyword_sources(app, text: str, kb: str | None = None) -> list[str]:
    ranked = app.store.keyword_search(app.analyzer.terms(text), 5, SearchFilter(kbs=[kb] if kb else None))
    chunks = app.store.fetch_chunks([chunk_id for chunk_id, _ in ranked])
    return [Path(chunks[chunk_id].source).name for chunk_id, _ in ranked]


@pytest.mark.slow
def test_cmrc_ingest_then_unchanged_rerun(make_app, tiny_embedding_dir) -> None:
    app = make_app(embedding_model=str(tiny_embedding_dir))
    first = Ingestor(app).run([CMRC_DOCS], kb="cmrc", progress=False)
    assert first.count("new") == 256 and not first.failed
    assert first.chunks_written >= 256 and first.vectors_written == first.chunks_written
    assert first.awaiting_vectors == 0
    before = snapshot(app, "cmrc")
    assert before["vectors"] == first.chunks_written

    second = Ingestor(app).run([CMRC_DOCS], kb="cmrc", progress=False)
    assert second.count("unchanged") == 256 and second.chunks_written == 0 and second.vectors_written == 0
    assert snapshot(app, "cmrc") == before
    # Chunks carry their metadata: source, title, heading path, position, kb, hash.
    chunk = app.store.sample_chunks(1)[0]
    assert chunk.kb == "cmrc" and chunk.title and chunk.heading_path and chunk.position == 0


def test_an_unchanged_rerun_loads_no_model_tokenizer_or_dictionary(make_app, tiny_embedding_dir) -> None:
    """What makes an unchanged re-ingest take a second, not ten: nothing is loaded to find that out."""
    Ingestor(make_app(embedding_model=str(tiny_embedding_dir))).run([ROOT / "ingest" / "samples"], kb="same",
                                                                   progress=False)
    app = make_app(embedding_model=str(tiny_embedding_dir))  # a new process's registry and analyzer
    report = Ingestor(app).run([ROOT / "ingest" / "samples"], kb="same", progress=False)
    assert report.count("unchanged") == len(report.results) and report.chunks_written == 0
    assert not any(app.models.loaded(role) for role in ("embedding", "embedding_tokenizer", "reranker", "llm"))
    assert app.analyzer.segmenter.name == "jieba" and app.analyzer.segmenter._jieba is None


def test_changed_file_is_replaced_and_sync_removes_deleted(make_app, tmp_path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# 甲\n\n原来的内容讲的是熊猫。", encoding="utf-8")
    (docs / "b.md").write_text("# 乙\n\n长城是古代的防御工程。", encoding="utf-8")
    app = make_app()
    Ingestor(app).run([docs], kb="sync", progress=False)
    assert keyword_sources(app, "熊猫", "sync") == ["a.md"]

    (docs / "a.md").write_text("# 甲\n\n新的内容讲的是企鹅。", encoding="utf-8")
    report = Ingestor(app).run([docs], kb="sync", progress=False)
    assert (report.count("changed"), report.count("unchanged")) == (1, 1)
    assert keyword_sources(app, "熊猫", "sync") == [] and keyword_sources(app, "企鹅", "sync") == ["a.md"]

    (docs / "b.md").unlink()
    report = Ingestor(app).run([docs], kb="sync", progress=False)
    assert report.count("removed") == 0 and keyword_sources(app, "长城", "sync") == ["b.md"]  # no --sync: kept
    report = Ingestor(app).run([docs], kb="sync", sync=True, progress=False)
    assert report.count("removed") == 1 and keyword_sources(app, "长城", "sync") == []


@pytest.mark.slow
def test_kill_9_then_resume_matches_an_uninterrupted_run(make_app, pg_data_dir, tiny_embedding_dir,
                                                         tmp_path) -> None:
    app = make_app(embedding_model=str(tiny_embedding_dir))
    Ingestor(app).run([CMRC_DOCS], kb="reference", progress=False)
    expected = snapshot(app, "reference")

    env = {**os.environ, "DATA_DIR": str(pg_data_dir), "EMBEDDING_MODEL": str(tiny_embedding_dir),
           "INGEST_GROUP_CHUNKS": "8", "LLM_BACKEND": "none", "MODELS_DIR": str(tmp_path / "models")}
    command = [sys.executable, "-m", "askany.main", "--ingest", str(CMRC_DOCS), "--kb", "killed", "--no-progress"]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    stored = 0
    while time.monotonic() < deadline and process.poll() is None:
        stored = len(snapshot(app, "killed")["documents"])
        if stored >= 20:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < stored < 256, "the kill must land in the middle of the run"
    with app.db.connection() as conn:  # never half a document: every stored one has all its chunks
        complete = conn.execute(
            "SELECT bool_and(d.chunk_count = (SELECT count(*) FROM chunks c WHERE c.document_id = d.id)) "
            "FROM documents d WHERE kb = 'killed'").fetchone()[0]
    assert complete

    resumed = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    final = snapshot(app, "killed")
    assert final["documents"] == expected["documents"]
    assert final["terms"] == expected["terms"] and final["vectors"] == expected["vectors"]
    assert sorted(row[1:] for row in final["chunks"]) == sorted(row[1:] for row in expected["chunks"])


@pytest.mark.slow
def test_two_ingestions_of_the_same_folder_at_once_end_as_one_run(make_app, pg_data_dir, tmp_path) -> None:
    app = make_app()
    Ingestor(app).run([CMRC_DOCS], kb="reference", progress=False)
    expected = snapshot(app, "reference")
    env = {**os.environ, "DATA_DIR": str(pg_data_dir), "EMBEDDING_ENABLED": "false", "INGEST_GROUP_CHUNKS": "4",
           "LLM_BACKEND": "none", "MODELS_DIR": str(tmp_path / "models")}
    command = [sys.executable, "-m", "askany.main", "--ingest", str(CMRC_DOCS), "--kb", "twice", "--no-progress"]
    runs = [subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outcomes = [run.communicate(timeout=300) for run in runs]
    for run, (_, stderr) in zip(runs, outcomes, strict=True):
        assert run.returncode == 0 and "Traceback" not in stderr, stderr
    final = snapshot(app, "twice")
    assert final["documents"] == [(source, digest, count) for source, digest, count in expected["documents"]]
    assert final["terms"] == expected["terms"]
    assert sorted(row[1:] for row in final["chunks"]) == sorted(row[1:] for row in expected["chunks"])


def make_bad_inputs(folder: Path) -> dict[str, str]:
    """Files of every bad kind, with the reason each must be reported with."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.md").write_bytes(b"")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02PNG\x00" * 50)
    (folder / "huge.txt").write_text("很大的文件。" * 200_000, encoding="utf-8")
    (folder / "drawing.dwg").write_bytes(b"AC1032")
    (folder / "image.png").write_bytes(b"\x89PNG\r\n")  # read by OCR (when installed): a truncated image
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (folder / "corrupt.docx").write_bytes(b"PK not a zip")
    (folder / "locked.md").write_text("# 锁住\n\n读不到。", encoding="utf-8")
    (folder / "good.md").write_text("# 正常\n\n正常的文件会被收录。", encoding="utf-8")
    return {"empty.md": "empty", "binary.txt": "binary", "huge.txt": "limit", "drawing.dwg": "unsupported extension",
            "image.png": "corrupt image" if ocr_installed() else "unsupported extension",
            "corrupt.pdf": "PDF", "corrupt.docx": "", "locked.md": "unreadable"}


def test_bad_inputs_are_skipped_with_reasons_and_nothing_stored_is_lost(make_app, tmp_path, monkeypatch,
                                                                       capsys) -> None:
    app = make_app(max_file_size_mb=1)
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "kept.md").write_text("# 已有\n\n已经收录的文档不能丢失。", encoding="utf-8")
    Ingestor(app).run([keep], kb="bad", progress=False)

    bad = tmp_path / "bad"
    reasons = make_bad_inputs(bad)
    real_read_bytes = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "locked.md":
            raise PermissionError(13, "Permission denied")
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    report = Ingestor(app).run([bad], kb="bad", progress=False)
    by_name = {Path(result.path).name: result for result in report.results}
    for name, reason in reasons.items():
        assert by_name[name].status in ("failed", "skipped") and reason.lower() in by_name[name].reason.lower(), \
            (name, by_name[name])
    assert by_name["drawing.dwg"].status == "skipped" and by_name["good.md"].status == "new"
    assert keyword_sources(app, "已经收录的文档", "bad")[0] == "kept.md"

    monkeypatch.undo()
    from askany.core.config import get_settings
    monkeypatch.setenv("DATA_DIR", str(app.settings.data_dir))
    monkeypatch.setenv("MAX_FILE_SIZE_MB", "1")
    monkeypatch.setenv("EMBEDDING_MODEL", str(tmp_path / "none"))
    get_settings.cache_clear()
    try:
        status = main(["--ingest", str(bad), "--kb", "bad-cli", "--no-progress"])
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert status == 1 and "Files not ingested" in out and "Some files failed" in out and "empty.md" in out


def test_encodings_pdf_and_docx(make_app, tmp_path) -> None:
    docs = tmp_path / "mixed"
    docs.mkdir()
    (docs / "gbk.txt").write_bytes("服务器的磁盘空间不足时，需要清理日志目录。".encode("gbk"))
    (docs / "big5.txt").write_bytes("繁體中文的文件內容，保持原樣。".encode("big5"))
    (docs / "bom.md").write_bytes("\ufeff# 带签名\n\n带字节顺序标记的文件。".encode())
    document = docx.Document()
    document.add_heading("部署手册", level=1)
    document.add_paragraph("部署之前需要申请防火墙白名单。")
    document.save(docs / "manual.docx")
    from tests.ingestion.test_loaders import (
        make_pdf,  # the PDF builder of the loader tests (real extractable Chinese)
    )

    (docs / "report.pdf").write_bytes(make_pdf(["季度报告说明了机房迁移的进度。"]))
    app = make_app()
    report = Ingestor(app).run([docs], kb="enc", progress=False)
    assert report.count("new") == 5, report.results
    assert keyword_sources(app, "磁盘空间", "enc")[0] == "gbk.txt"
    assert keyword_sources(app, "繁體中文", "enc")[0] == "big5.txt"
    assert keyword_sources(app, "防火墙白名单", "enc")[0] == "manual.docx"
    assert keyword_sources(app, "机房迁移", "enc")[0] == "report.pdf"
    texts = [c.text for c in app.store.fetch_chunks([i for i, _ in app.store.keyword_search(
        app.analyzer.terms("繁體"), 1, SearchFilter(kbs=["enc"]))]).values()]
    assert "繁體中文的文件內容" in texts[0]  # Traditional Chinese kept as written


def test_mixed_tokens_and_out_of_dictionary_words_match(make_app) -> None:
    app = make_app()
    Ingestor(app).run([ROOT / "ingest" / "samples"], kb="samples", progress=False)
    for query, expected in [("k8s", "k8s-运维手册.md"), ("ERR-2041", "k8s-运维手册.md"),
                            ("v2.3.1", "发布流程.md"), ("deployment", "k8s-运维手册.md"),
                            ("灰度发布", "发布流程.md"), ("恢复演练", "数据库备份.txt")]:
        assert keyword_sources(app, query, "samples")[0] == expected, query
    # "运维组" is not one jieba word; its characters and bigrams still find the manual.
    assert keyword_sources(app, "运维组", "samples")[0] == "k8s-运维手册.md"
    faq = app.store.fetch_chunks([i for i, _ in app.store.keyword_search(
        app.analyzer.terms("VPN 连不上"), 1, SearchFilter(kbs=["samples"], faq=True))])
    entry = next(iter(faq.values()))
    assert entry.is_faq and entry.metadata["question"] == "VPN 连不上怎么办？" and "网络" in entry.tags


def test_keyword_index_without_model_then_vectors_filled_later(make_app, tiny_embedding_dir) -> None:
    docs = ROOT / "ingest" / "samples"
    app = make_app()
    report = Ingestor(app).run([docs], kb="later", progress=False)
    assert report.awaiting_vectors == report.chunks_written > 0
    assert "No vectors written" in report.embedding_note
    assert keyword_sources(app, "灰度发布", "later")

    with_model = make_app(embedding_model=str(tiny_embedding_dir))
    report = Ingestor(with_model).run([docs], kb="later", progress=False)
    assert report.chunks_written == 0 and report.awaiting_vectors == 0
    assert report.vectors_written > 0


def test_vectors_from_another_model_are_detected(make_app, tiny_embedding_dir, tmp_path, monkeypatch,
                                                 capsys) -> None:
    docs = ROOT / "ingest" / "samples"
    Ingestor(make_app(embedding_model=str(tiny_embedding_dir))).run([docs], kb="mm", progress=False)
    other = tmp_path / "other-embedder"
    shutil.copytree(tiny_embedding_dir, other)
    with pytest.raises(EmbeddingMismatchError, match="--reembed"):
        Ingestor(make_app(embedding_model=str(other))).run([docs], kb="mm", progress=False)

    from askany.core.config import get_settings
    monkeypatch.setenv("DATA_DIR", str(make_app().settings.data_dir))
    monkeypatch.setenv("EMBEDDING_MODEL", str(other))
    get_settings.cache_clear()
    try:
        assert main(["--reembed", "--no-progress", "--json"]) == 0
        assert main(["--create-index", "--json"]) == 0
        assert main(["--check-db", "--json"]) == 0
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert '"hnsw_index_built": true' in out and '"other-embedder"' in out and '"hnsw_index": true' in out


def test_store_works_as_a_llamaindex_vector_store(make_app, tiny_embedding_dir) -> None:
    from llama_index.core import VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from askany.integrations.llamaindex import AskAnyVectorStore

    app = make_app(embedding_model=str(tiny_embedding_dir))
    Ingestor(app).run([ROOT / "ingest" / "samples"], kb="li", progress=False)
    embed_model = HuggingFaceEmbedding(model_name=str(tiny_embedding_dir), device="cpu")
    index = VectorStoreIndex.from_vector_store(AskAnyVectorStore(app), embed_model=embed_model)
    nodes = index.as_retriever(similarity_top_k=3).retrieve("如何回滚发布？")
    assert len(nodes) == 3 and all(node.node.metadata["kb"] == "li" for node in nodes)
    assert all(node.node.metadata["source"].endswith((".md", ".txt", ".json")) for node in nodes)


def test_ingested_rows_are_the_rows_their_llamaindex_nodes_make(make_app) -> None:
    """Ingestion makes chunk rows directly (no LlamaIndex in its workers); a LlamaIndex user storing
    the same chunks as nodes gets the same rows (documents, FAQ entries, their tags and metadata)."""
    from askany.storage.nodes import chunk_node, chunk_records

    ingestor = Ingestor(make_app())
    for path in sorted((ROOT / "ingest" / "samples").iterdir()):
        data = path.read_bytes()
        record = ingestor.parse(ParseTask(path, str(path), data, file_hash(data), False), "kb", ["t"], "fp").record
        nodes = [chunk_node(chunk.node_id, chunk.text, f"kb:{record.source}", {
            "source": record.source, "title": record.title, "heading_path": chunk.heading_path,
            "position": chunk.position, "kb": "kb", "tags": chunk.tags, "doc_hash": record.content_hash,
            "is_faq": chunk.is_faq, **chunk.metadata}) for chunk in record.chunks]
        assert chunk_records(nodes, [chunk.terms for chunk in record.chunks]) == record.chunks


@pytest.mark.usefixtures("empty_db")
def test_hostile_text_and_names_do_not_sink_the_good_files(make_app, tmp_path: Path) -> None:
    import os

    from askany.ingestion.loaders.registry import storable

    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "faq.json").write_text('[{"question": "密码\\u0000重置", "answer": "找管理员"},'
                                     ' {"question": "VPN", "answer": "先装客户端\\ud800"}]', encoding="utf-8")
    (folder / "good.md").write_text("# 报销\n\n差旅报销三十天内提交。\n", encoding="utf-8")
    bad_name = os.fsdecode(os.fsencode(folder) + b"/n\xffame.md")
    Path(bad_name).write_text("坏名字", encoding="utf-8")

    report = Ingestor(make_app()).run([folder], kb="hostile", progress=False)

    by_status = {r.status: r for r in report.results if r.status == "failed"}
    assert by_status["failed"].reason == "the file name is not valid UTF-8: rename the file"
    assert report.failed_count == 1 and {r.status for r in report.results} == {"new", "failed"}
    app = make_app()
    texts = [c.text for c in app.store.fetch_chunks(
        [cid for cid, _ in app.store.keyword_search(app.analyzer.terms("密码 重置 客户端 报销"), 10, None)]).values()]
    assert any("密码重置" in t for t in texts) and any("客户端\ufffd" in t for t in texts)
    assert any("报销" in t for t in texts)
    assert storable("a\x00b\ud800") == "ab\ufffd"


def test_titles_and_tags_with_copy_escapes_are_stored_as_written(make_app, tmp_path: Path) -> None:
    # Documents and chunks are written by COPY: its text format's tab, newline, backslash and \N,
    # and an array literal's comma, quote and braces, must arrive as the file and the caller wrote them.
    folder = tmp_path / "escapes"
    folder.mkdir()
    title = r"C:\logs\N 目录 {a,b} \"引号\""
    (folder / "doc.md").write_text(f"# {title}\n\n日志目录的清理办法。\n", encoding="utf-8")
    tags = ["a,b", "{x}", 'q"u', "back\\slash", "NULL", r"\N", "制表\t符"]
    app = make_app()
    Ingestor(app).run([folder], kb="escapes", tags=tags, progress=False)
    (document,) = app.store.list_documents("escapes")
    assert document["title"] == title and document["tags"] == sorted(tags)  # tags are kept sorted
    (chunk_id, _), = app.store.keyword_search(app.analyzer.terms("日志目录 清理"), 5, None)
    assert app.store.fetch_chunks([chunk_id])[chunk_id].tags == sorted(tags)
