"""Deleting a document behaves the same from the CLI, the page's service calls and the HTTP API:
the document is gone from search and listing, and an uploaded document's stored copy is removed."""

from __future__ import annotations

from pathlib import Path

import pytest

from askany.service import Service
from tests.support.api_server import running

DOC = "# 报销流程\n\n差旅报销需在出差结束后三十天内提交发票。\n"


def uploaded(service: Service, tmp_path: Path, kb: str, name: str) -> str:
    original = tmp_path / name
    original.write_text(DOC, encoding="utf-8")
    stored, refused = service.store_uploads([original], kb)
    assert not refused
    [source] = stored
    service.ingest([Path(source)], kb=kb)
    assert Path(source).is_file() and any(d["source"] == source for d in service.list_documents(kb))
    return source


def gone(service: Service, kb: str, source: str) -> bool:
    return not Path(source).exists() and all(d["source"] != source for d in service.list_documents(kb))


@pytest.mark.usefixtures("empty_db")
def test_cli_page_and_api_delete_alike(make_app, run_cli, pg_data_dir: Path, tmp_path: Path) -> None:
    import httpx

    service = Service(app=make_app())
    via_service = uploaded(service, tmp_path, "hr", "a.md")  # what the page's delete button calls
    result = service.delete_document("hr", via_service)
    assert result.deleted and result.upload_removed and gone(service, "hr", via_service)

    via_cli = uploaded(service, tmp_path, "hr", "b.md")
    status, out, _ = run_cli("--delete-doc", via_cli, "--kb", "hr", DATA_DIR=str(service.settings.data_dir))
    assert status == 0 and gone(service, "hr", via_cli), out

    via_api = uploaded(service, tmp_path, "hr", "c.md")
    with running(service) as base:
        listed = httpx.get(base + "/v1/documents", params={"kb": "hr"}, timeout=60).json()["data"]
        assert [d["source"] for d in listed] == [via_api]
        response = httpx.delete(base + "/v1/documents", params={"kb": "hr", "source": via_api}, timeout=60)
        assert response.status_code == 200 and response.json()["upload_removed"] is True
        assert gone(service, "hr", via_api)
        again = httpx.delete(base + "/v1/documents", params={"kb": "hr", "source": via_api}, timeout=60)
        assert again.status_code == 404 and again.json()["error"]["code"] == "document_not_found"


@pytest.mark.usefixtures("empty_db")
def test_knowledge_bases_never_share_an_upload_folder(make_app, tmp_path: Path) -> None:
    from urllib.parse import unquote

    from askany.service import KnowledgeBaseError
    from askany.service.uploads import kb_folder_name

    service = Service(app=make_app())
    main = uploaded(service, tmp_path, "main", "same.md")
    with pytest.raises(KnowledgeBaseError, match="path separator"):  # the name rule refuses it first ...
        uploaded(service, tmp_path, "evil/main", "same.md")
    assert Path(main).is_file() and len(list(service.settings.upload_dir.rglob("same.md"))) == 1
    # ... and a name stored before that rule (or typed into the store) still gets a folder of its own.
    assert kb_folder_name("evil/main") == "evil%2Fmain" != kb_folder_name("main")
    for kb in ("..", ".", "a/../b", "财务\\报销", "x%2Fy", "CON:"):
        folder = kb_folder_name(kb)
        assert "/" not in folder and "\\" not in folder and not folder.startswith(".") and unquote(folder) == kb
