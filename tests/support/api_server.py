"""A real AskAny HTTP server on loopback for tests: uvicorn in a thread, on a free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from askany.server import create_app
from askany.service import Service


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running(service: Service, with_page: bool = False) -> Iterator[str]:
    """Serve `service` until the block ends; yields the base URL (without /v1)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service, with_page=with_page), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(10)


def get(base: str, path: str, **kwargs: object) -> httpx.Response:
    return httpx.get(base + path, timeout=60, **kwargs)


def post(base: str, path: str, body: object = None, **kwargs: object) -> httpx.Response:
    return httpx.post(base + path, json=body, timeout=120, **kwargs)
