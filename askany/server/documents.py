"""/v1/documents: list and delete stored documents, with the same rules as the CLI and the page
(deleting an uploaded document removes its stored copy too)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from askany.server.errors import APIError
from askany.service import Service

router = APIRouter()


def _service(request: Request) -> Service:
    return request.app.state.service


@router.get("/v1/documents")
def list_documents(request: Request, kb: str | None = None) -> dict:
    return {"object": "list", "data": _service(request).list_documents(kb)}


@router.delete("/v1/documents")
def delete_document(request: Request, source: str, kb: str | None = None) -> dict:
    result = _service(request).delete_document(kb, source)
    if not result.deleted:
        raise APIError(404, f"No document {source!r} in knowledge base {result.kb!r}", "document_not_found", "source")
    return {"object": "document.deleted", "kb": result.kb, "source": result.source, "deleted": True,
            "upload_removed": result.upload_removed}
