"""The HTTP server: the OpenAI-compatible API under /v1 and the chat page at /, one process, one set of
loaded models and one database pool (`python -m askany.main --serve`)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from askany.server import chat, documents, encoders
from askany.server.catalog import model_list
from askany.server.errors import error_response, install
from askany.server.middleware import APIGate, BodyTooLarge, HostGate, allowed_hosts, is_loopback
from askany.service import Service

log = logging.getLogger(__name__)


def create_app(service: Service, *, with_page: bool = True, host: str | None = None) -> Any:
    """The ASGI app: API routes, OpenAI-shaped errors, the host/origin gate (`host`: the bound address),
    the path/key/size gate, and the page at /."""
    api = FastAPI(title="AskAny", docs_url=None, redoc_url=None, openapi_url="/v1/openapi.json")
    api.state.service = service
    api.state.encoder_thread = ThreadPoolExecutor(1, thread_name_prefix="askany-encoders")
    install(api)

    @api.exception_handler(BodyTooLarge)
    async def _too_large(_: Request, error: BodyTooLarge) -> JSONResponse:
        return JSONResponse(error.body, status_code=413)

    @api.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": model_list(service)}

    @api.get("/v1/models/{model_id:path}")
    def model(model_id: str) -> Any:
        found = next((m for m in model_list(service) if m["id"] == model_id), None)
        return found or error_response(404, f"Unknown model {model_id!r}", "model_not_found")

    @api.get("/v1/health")
    def health() -> dict:
        problems = service.model_problems()
        status = service.status(db_probe=True)
        roles = {role: {"name": state.get("name"), "ok": state.get("ok"), "loaded": status["loaded"].get(role),
                        "problem": problems.get(role)} for role, state in status["models"].items()}
        return {"status": "ok", "database": status["database"].get("ok"), "models": roles}

    api.include_router(encoders.router)
    api.include_router(chat.router)
    api.include_router(documents.router)
    page = None
    if with_page:
        from askany.web import page_app

        page = page_app(service)
    settings = service.settings
    gate = APIGate(api, settings.api_keys, int(settings.api_max_body_mb * 1024 * 1024), page)
    return HostGate(gate, allowed_hosts(settings.allowed_host_names, host))


def serve(service: Service | None = None, *, host: str | None = None, port: int | None = None,
          with_page: bool = True, warm: bool = True) -> None:
    """Serve until interrupted on API_HOST:API_PORT (or `host`/`port`)."""
    import uvicorn

    service = service or Service()
    settings = service.settings
    host = host or settings.api_host
    port = port or settings.api_port
    if not settings.api_keys and not is_loopback(host):
        log.warning("Serving on %s without API_KEY: anyone who can reach this address can use the API; "
                    "set API_KEY in .env", host)
    if with_page:
        from askany.web import warn_if_open

        warn_if_open(settings, host)
    if warm:
        from askany.web import warm_up

        threading.Thread(target=warm_up, args=(service,), name="askany-warm-up", daemon=True).start()
    app = create_app(service, with_page=with_page, host=host)
    log.info("Serving the AskAny API on http://%s:%d/v1 and the page on http://%s:%d/", host, port, host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
