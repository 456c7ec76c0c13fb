"""What every request passes before an endpoint: its path made canonical, its API key checked, its body
size bounded. Pure ASGI, so streamed responses pass through untouched."""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The API's own endpoints, reachable with or without the /v1 prefix.
API_PATHS = ("models", "embeddings", "rerank", "chat/completions", "documents", "health")
_DOUBLE_SLASH = re.compile(r"/{2,}")
_API = re.compile(r"^/(?:v1/)?(" + "|".join(re.escape(p) for p in API_PATHS) + r")(/.*)?$")
OPEN_PATHS = ("/health", "/v1/health")


def canonical_path(path: str) -> str:
    """"/v1//models", "//models" and "/models" are all "/v1/models"; other paths (the page) are kept."""
    collapsed = _DOUBLE_SLASH.sub("/", path)
    match = _API.match(collapsed)
    if match is None:
        return path
    return f"/v1/{match.group(1)}{match.group(2) or ''}"


def is_api_path(path: str) -> bool:
    return path.startswith("/v1/")


async def _reply(send: Send, status: int, body: dict, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


def _error(status: int, message: str, code: str) -> dict:
    from askany.server.errors import error_body

    return error_body(status, message, code)


class APIGate:
    """Canonical paths, then API keys (every API path but /health), then the body-size limit; API
    paths go to the API app, everything else to the page (so the page's middleware costs the API
    nothing: Gradio's added 3-4 ms to every API request)."""

    def __init__(self, app: ASGIApp, keys: list[str], max_body_bytes: int, page: ASGIApp | None = None):
        self.app = app
        self.page = page or app
        self.keys = [key.encode() for key in keys if key]
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await (self.app if is_api_path(scope.get("path", "")) else self.page)(scope, receive, send)
            return
        path = canonical_path(scope["path"])
        if path != scope["path"]:
            scope = {**scope, "path": path, "raw_path": path.encode()}
        if not is_api_path(path):
            await self.page(scope, receive, send)
            return
        if self.keys and path not in OPEN_PATHS and not self._authorized(scope):
            await _reply(send, 401, _error(401, "Missing or wrong API key: send 'Authorization: Bearer <key>' "
                                                "with a key from API_KEY", "invalid_api_key"),
                         [(b"www-authenticate", b"Bearer")])
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _reply(send, 413, self._too_large())
            return
        await self.app(scope, self._bounded(receive, send), send)

    def _authorized(self, scope: Scope) -> bool:
        header = dict(scope.get("headers", [])).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            return False
        return any(hmac.compare_digest(token, key) for key in self.keys)

    def _too_large(self) -> dict:
        return _error(413, f"Request body larger than {self.max_body_bytes // (1024 * 1024)} MB "
                           "(API_MAX_BODY_MB); send fewer or shorter inputs per request", "request_too_large")

    def _bounded(self, receive: Receive, send: Send) -> Receive:
        """A receive that stops a chunked body at the limit (no Content-Length to check up front)."""
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise BodyTooLarge(self._too_large())
            return message
        return bounded


class BodyTooLarge(Exception):
    def __init__(self, body: dict):
        super().__init__(body["error"]["message"])
        self.body = body
