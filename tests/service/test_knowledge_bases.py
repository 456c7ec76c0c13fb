"""Knowledge bases created, listed and deleted through the service (what the page and the CLI call):
one name rule, an empty kb that is listed, and a delete that leaves nothing of it behind."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from askany.service import MAX_KB_NAME_CHARS, KnowledgeBaseError, Service, check_kb_name
from askany.storage.store import SearchFilter

DOC = "# 报销流程\n\n差旅报销需在出差结束后三十天内提交发票。\n"


@pytest.mark.parametrize(("name", "code"), [
    ("", "name_empty"), ("   ", "name_empty"), (None, "name_empty"), ("x" * (MAX_KB_NAME_CHARS + 1), "name_too_long"),
    ("a\x00b", "name_invisible"), ("hr\u202egpj", "name_invisible"), ("零\u200b宽", "name_invisible"),
    ("a\nb", "name_invisible"), ("evil/main", "name_separator"), ("..\\up", "name_separator"),
    ("全角／斜杠", "name_separator"), ("..", "name_separator"), (".", "name_separator"),
])
def test_hostile_names_are_refused_with_a_reason(name: Any, code: str) -> None:
    with pytest.raises(KnowledgeBaseError) as caught:
        check_kb_name(name)
    assert caught.value.code == code and "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["hr", " 人事制度 ", "产品-2024_v2", "Team A", "x" * MAX_KB_NAME_CHARS, "ü.ñ"])
def test_ordinary_names_pass(name: str) -> None:
    assert check_kb_name(name) == name.strip()


def upload(service: Service, tmp_path: Path, kb: str, name: str) -> str:
    original = tmp_path / name
    original.write_text(DOC, encoding="utf-8")
    stored, refused = service.store_uploads([original], kb)
    assert not refused
    service.ingest([Path(p) for p in stored], kb=kb)
    return next(iter(stored))


@pytest.mark.usefixtures("empty_db")
def test_create_list_delete_removes_everything_of_that_kb(make_app, run_cli, tiny_embedding_dir,
                                                          tmp_path: Path) -> None:
    service = Service(app=make_app(embedding_model=str(tiny_embedding_dir)))
    assert service.create_kb(" 财务 ") == "财务"
    assert {"kb": "财务", "documents": 0, "chunks": 0, "faq_files": 0} in service.knowledge_bases()
    with pytest.raises(KnowledgeBaseError) as caught:
        service.create_kb("财务")
    assert caught.value.code == "exists"
    with pytest.raises(KnowledgeBaseError):
        service.ingest([tmp_path], kb="bad/name")

    source = upload(service, tmp_path, "财务", "报销.md")
    kept = upload(service, tmp_path, "hr", "留下.md")
    store = service.app.store
    assert [kb["documents"] for kb in service.knowledge_bases() if kb["kb"] == "财务"] == [1]
    with service.app.db.connection() as conn:
        vectors_before = conn.execute("SELECT count(*) FROM chunk_vectors").fetchone()[0]
    assert vectors_before == store.count_chunks()

    result = service.delete_kb("财务")
    assert result.deleted and result.documents == 1 and result.chunks >= 1 and result.uploads_removed == 1
    assert "财务" not in service.kb_names() and not Path(source).exists()
    assert not (service.settings.upload_dir / "财务").exists()
    assert not store.has_chunks(SearchFilter(kbs=["财务"]))
    with service.app.db.connection() as conn:
        assert conn.execute("SELECT count(*) FROM chunk_vectors").fetchone()[0] == store.count_chunks()
        assert conn.execute("SELECT count(*) FROM keyword_segments s JOIN keyword_partitions p ON p.id = s.part "
                            "WHERE p.kb = '财务'").fetchone()[0] == 0
    assert store.keywords.needs_rebuild() == ""  # the keyword index still matches the chunks
    assert store.keyword_search(["差旅"], 5, SearchFilter(kbs=["hr"]))  # the other kb is untouched
    assert Path(kept).exists()
    with pytest.raises(KnowledgeBaseError) as caught:
        service.delete_kb("财务")
    assert caught.value.code == "not_found"

    # The CLI goes through the same calls.
    status, out, err = run_cli("--create-kb", "空的", "--json", DATA_DIR=str(service.settings.data_dir))
    assert status == 0 and '"created": true' in out, err
    status, out, err = run_cli("--delete-kb", "hr", DATA_DIR=str(service.settings.data_dir))
    assert status == 0 and "1 documents" in out, err
    status, _, err = run_cli("--create-kb", "a/b", DATA_DIR=str(service.settings.data_dir))
    assert status == 2 and "path separator" in err
    assert service.kb_names() == ["空的"] and not Path(kept).exists()


class BlockedIngest(Service):
    """An ingestion that waits until the test lets it go, to delete a kb while an upload runs."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.go = threading.Event()

    def ingest(self, paths: list[Path], **options: Any):  # noqa: ANN201
        self.go.wait(30)
        return super().ingest(paths, **options)


@pytest.mark.usefixtures("empty_db")
def test_a_kb_is_not_deleted_while_an_upload_into_it_runs(make_app, tmp_path: Path) -> None:
    service = BlockedIngest(app=make_app())
    service.create_kb("hr")
    original = tmp_path / "a.md"
    original.write_text(DOC, encoding="utf-8")
    job = service.start_upload([original], "hr")
    with pytest.raises(KnowledgeBaseError) as caught:
        service.delete_kb("hr")
    assert caught.value.code == "busy"
    service.go.set()
    for _ in range(300):
        if job.finished:
            break
        threading.Event().wait(0.05)
    assert job.finished and not job.error
    assert service.delete_kb("hr").documents == 1 and service.kb_names() == []
