"""Serving the page, alone (`serve`, `--ui`) or under the HTTP server (`page_app`, `--serve`): Gradio
mounted on a FastAPI app, run by uvicorn behind the API's Host/Origin gate (server/middleware.py), with
an optional login, and no URL fetched for anyone (file routes naming one are refused, inputs given as
one are not downloaded).

Never shared, no analytics, no server-side rendering through Node, no MCP or PWA endpoints, no static
file workers: the page and all its assets come from this process, and every request passes the gate.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import gradio as gr
import httpx
import uvicorn
from fastapi import FastAPI
from gradio import processing_utils
from starlette.responses import JSONResponse
from starlette.routing import Mount

from askany.core.config import Settings
from askany.core.errors import AskAnyError
from askany.server.middleware import ASGIApp, HostGate, Receive, Scope, Send, allowed_hosts, is_loopback
from askany.service import Service
from askany.web.app import build_app, page_theme, static_text, warm_up

log = logging.getLogger(__name__)

# Gradio fetches a URL given to its file routes (a request to any host) and proxies to loaded Spaces.
_REMOTE_FILE = re.compile(r"/gradio_api/(?:file[=/][a-z][a-z0-9+.-]+:/|proxy=)", re.IGNORECASE)
_SLASHES = re.compile(r"/{2,}")
Login = list[tuple[str, str]] | Callable[[str, str], bool]


def serve(service: Service | None = None, *, host: str | None = None, port: int | None = None,
          block: bool = True, warm: bool = True) -> PageServer:
    """Serve the page on UI_HOST:UI_PORT (or `host`/`port`); with block=False return once it listens."""
    service = service or Service()
    settings = service.settings
    host = host or settings.ui_host
    port = port or settings.ui_port
    warn_if_open(settings, host)
    blocks = build_app(service)
    blocks.queue(default_concurrency_limit=1)
    if warm:
        threading.Thread(target=warm_up, args=(service,), name="askany-warm-up", daemon=True).start()
    page = mount(service, blocks)
    server = PageServer(HostGate(LocalFilesOnly(page), allowed_hosts(settings.allowed_host_names, host)),
                        host, port, stopping=stopper(blocks, page))
    log.info("Serving the AskAny page on http://%s:%d", host, port)
    server.run() if block else server.start()
    return server


def page_app(service: Service) -> ASGIApp:
    """The page as an ASGI app for the HTTP server, its file routes local only."""
    return LocalFilesOnly(mount(service, build_app(service)))


def mount(service: Service, blocks: gr.Blocks) -> FastAPI:
    """`blocks` at / of a FastAPI app of its own."""
    # Gradio downloads an input given as a URL (any file-shaped JSON in an event) through this transport.
    processing_utils.async_transport = NoDownloads()
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    return gr.mount_gradio_app(app, blocks, path="/", **mount_options(service.settings))


def stopper(blocks: gr.Blocks, page: FastAPI) -> Callable[[], None]:
    """What ends the page's open streams at shutdown: its queue, and the heartbeats of the Gradio app
    mounted on `page` (`blocks.app` is another one, made when the Blocks were built)."""
    mounted = next(route.app for route in page.routes if isinstance(route, Mount))

    def stop() -> None:
        blocks.close(verbose=False)
        mounted.stop_event.set()
    return stop


def mount_options(settings: Settings) -> dict[str, Any]:
    """No SSR through Node, no MCP or PWA endpoints, no monitoring; the login, if any."""
    return {"show_error": True, "max_file_size": int(settings.upload_max_mb * 1024 * 1024), "ssr_mode": False,
            "pwa": False, "mcp_server": False, "enable_monitoring": False, "footer_links": ["api", "settings"],
            "theme": page_theme(), "css": static_text("page.css"),
            "head": f"<script>\n{static_text('page.js')}</script>", "auth": page_login(settings)}


def page_login(settings: Settings) -> Login | None:
    """The UI_AUTH logins; without them, any user name with one of the API keys (API_KEY) as the
    password, so a server whose API needs a key never leaves the page beside it open; else none."""
    if settings.ui_logins:
        return settings.ui_logins
    keys = [key.encode() for key in settings.api_keys]
    if not keys:
        return None
    return lambda _user, password: any(hmac.compare_digest(password.encode(), key) for key in keys)


def warn_if_open(settings: Settings, host: str) -> None:
    if page_login(settings) is None and not is_loopback(host):
        log.warning("Serving the page on %s without a login: anyone who can reach this address can read, upload "
                    "and delete documents; set UI_AUTH (user:password) or API_KEY in .env", host)


class LocalFilesOnly:
    """File routes that name a URL get a 403 before Gradio could open a connection to it."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _REMOTE_FILE.match(_SLASHES.sub("/", scope["path"])):
            body = {"detail": "The page serves its own files only, never a URL"}
            await JSONResponse(body, status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class NoDownloads(httpx.AsyncBaseTransport):
    """A transport that never connects: every request gets a 403 (the page takes uploads, not URLs)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, request=request)


class PageServer:
    """The page's uvicorn server: `run` serves in this thread until interrupted, `start` in another one."""

    def __init__(self, app: ASGIApp, host: str, port: int, stopping: Callable[[], None]):
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=5)
        self.server = _Server(config, stopping)
        self.where = f"{host}:{port}"
        shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        self.local_url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"
        self.thread: threading.Thread | None = None

    def run(self) -> None:
        self.server.run()

    def start(self) -> None:
        self.thread = threading.Thread(target=self.server.run, name="askany-page", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AskAnyError(f"The page could not listen on {self.where}; if the port is in use, "
                                  "set UI_PORT or --port")
            time.sleep(0.02)

    def close(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, stopping: Callable[[], None]):
        super().__init__(config)
        self.stopping = stopping

    async def shutdown(self, sockets: Any = None) -> None:
        self.stopping()  # else the open heartbeat streams hold the shutdown for its whole grace time
        await super().shutdown(sockets)
