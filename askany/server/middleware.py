"""What every request passes before an endpoint: its Host and Origin checked (both HTTP doors), its path
made canonical, its API key checked, its body size bounded. Pure ASGI, so streamed responses pass through
untouched."""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

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
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
EVERY_INTERFACE = ("", "0.0.0.0", "::")


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(extra: Iterable[str], bound: str | None = None) -> list[str]:
    """The host names served: the loopback names, the bound address unless it is every interface, `extra`."""
    names = [*LOOPBACK_NAMES, *([bound] if bound and bound not in EVERY_INTERFACE else []), *extra]
    return list(dict.fromkeys(canonical_host(name) for name in names))


def canonical_host(name: str) -> str:
    """Lower case, IPv6 without brackets and in short form: "[0:0::1]" and "::1" are one name."""
    name = name.strip().lower().removeprefix("[").removesuffix("]")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def host_of(value: str, *, origin: bool = False) -> str | None:
    """The host name in a Host header ("name:port", "[::1]:port") or an Origin ("http://name:port"); None
    for anything else (an Origin of "null", user info, a path, a bad port)."""
    try:
        parts = urlsplit(value if origin else f"//{value}")
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    if origin and parts.scheme not in ("http", "https"):
        return None
    if not parts.hostname or "@" in parts.netloc or (parts.path and not origin) or parts.query or parts.fragment:
        return None
    return canonical_host(parts.hostname)


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


class HostGate:
    """Only requests naming a served host (Host) from no web page or a page on a served host (Origin) pass:
    a DNS-rebinding page sends its own name as Host, a cross-site page its own Origin. In front of
    everything, so nothing behind it (Gradio's CORS, which echoes any origin to a non-localhost Host) sees
    a foreign request. No Origin (curl, SDKs, servers like OpenWebUI) is fine."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str]):
        self.app = app
        names = [canonical_host(name) for name in hosts]
        self.any = "*" in names
        self.names = frozenset(names)
        self.suffixes = tuple(name[1:] for name in names if name.startswith("*."))

    def serves(self, host: str | None) -> bool:
        return host is not None and (host in self.names or host.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = None if self.any or scope["type"] not in ("http", "websocket") else self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect; closing before accepting answers 403
            await send({"type": "websocket.close", "code": 1008})
        else:
            await _reply(send, refusal[0], _error(*refusal))

    def refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        hosts = [value for name, value in scope.get("headers", []) if name == b"host"]
        host = hosts[0].decode("latin-1") if len(hosts) == 1 else ""
        if not self.serves(host_of(host)):
            return (400, f"Host {host[:100]!r} is not a name of this server; add it to ALLOWED_HOSTS if clients "
                         "reach the server by that name", "host_not_allowed")
        origin = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"origin"), None)
        if origin is not None and not self.serves(host_of(origin, origin=True)):
            return (403, f"Requests from web pages at {origin[:100]!r} are refused; add that host to "
                         "ALLOWED_HOSTS if the page may use this server", "origin_not_allowed")
        return None


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
