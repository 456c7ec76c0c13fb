"""The combined server (`--serve`: the API under /v1, the page at /) attacked over raw HTTP: forged Host
headers (DNS rebinding), foreign Origins, file routes naming URLs; the page's login with the API keys; the
warnings for an open server beyond loopback; and the host rules themselves."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from askany.service import Service
from tests.support.api_server import running

REMOTE = "93.184.215.14"
ROUTES = [("GET", "/v1/models"), ("GET", "/models"), ("GET", "/v1/health"), ("GET", "/health"),
          ("POST", "/v1/chat/completions"), ("POST", "/v1/embeddings"), ("GET", "/"), ("GET", "/gradio_api/info"),
          ("POST", "/gradio_api/call/list_documents")]


@pytest.fixture
def service(make_app) -> Service:
    return Service(app=make_app(allowed_hosts="askany.lan", embedding_enabled=False, reranker_enabled=False))


def send(base: str, method: str, path: str, **headers: str) -> httpx.Response:
    body = {"model": "askany", "input": "x", "data": [""], "messages": [{"role": "user", "content": "hi"}]}
    return httpx.request(method, base + path, headers=headers, json=body if method == "POST" else None,
                         timeout=30)


def test_a_rebound_host_name_is_refused_for_the_api_and_the_page(service) -> None:
    with running(service, with_page=True) as base:
        port = base.rsplit(":", 1)[1]
        for method, path in ROUTES:
            response = send(base, method, path, Host=f"evil.example:{port}", Origin=f"http://evil.example:{port}")
            assert response.status_code == 400, (path, response.text[:200])
            error = response.json()["error"]
            assert error["code"] == "host_not_allowed" and "ALLOWED_HOSTS" in error["message"]
            assert "access-control-allow-origin" not in response.headers
        assert send(base, "GET", "/v1/models", Host=f"askany.lan:{port}").status_code == 200
        assert send(base, "GET", "/v1/models", Host=f"[::1]:{port}").status_code == 200


def test_a_foreign_origin_is_refused_for_the_api_and_the_page(service) -> None:
    with running(service, with_page=True) as base:
        for method, path in ROUTES:
            response = send(base, method, path, Origin="http://evil.example")
            assert response.status_code == 403, (path, response.text[:200])
            assert response.json()["error"]["type"] == "permission_error"
            assert "access-control-allow-origin" not in response.headers
        preflight = send(base, "OPTIONS", "/v1/chat/completions", Origin="http://evil.example",
                         **{"Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
        # No Origin (SDKs, OpenWebUI's server) and pages on served hosts pass.
        for headers in [{}, {"Origin": "http://localhost:3000"}, {"Origin": "https://askany.lan"}]:
            assert send(base, "GET", "/v1/models", **headers).status_code == 200, headers


def test_file_routes_never_open_a_connection_to_a_url(service, loopback_only: list[object]) -> None:
    with running(service, with_page=True) as base:
        for path in [f"/gradio_api/file=http://{REMOTE}/x", f"/gradio_api/file/https://{REMOTE}/x",
                     f"//gradio_api/file=http://{REMOTE}/x", f"/gradio_api/proxy=http://{REMOTE}/x"]:
            assert httpx.get(base + path, timeout=30).status_code in (403, 404), path
            assert loopback_only == [], path


def test_the_page_beside_the_api_asks_for_an_api_key(make_app) -> None:
    service = Service(app=make_app(api_key="key-1", embedding_enabled=False, reranker_enabled=False))
    with running(service, with_page=True) as base:
        assert httpx.post(f"{base}/gradio_api/call/clear", json={"data": []}).status_code == 401
        assert httpx.post(f"{base}/login", data={"username": "me", "password": "key-2"}).status_code == 400
        login = httpx.post(f"{base}/login", data={"username": "me", "password": "key-1"})
        assert login.status_code == 200
        assert httpx.post(f"{base}/gradio_api/call/clear", json={"data": []}, cookies=login.cookies).status_code == 200
        assert send(base, "GET", "/v1/models", Authorization="Bearer key-1").status_code == 200


def test_an_open_server_beyond_loopback_is_warned_about(make_app, monkeypatch, caplog) -> None:
    import uvicorn

    from askany.server import serve

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)  # configured, never listening

    def warnings(host: str, with_page: bool = True, **settings: object) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="askany"):
            serve(Service(app=make_app(**settings)), host=host, port=9100, with_page=with_page, warm=False)
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    api, page = warnings("0.0.0.0")
    assert "without API_KEY" in api and "page on 0.0.0.0 without a login" in page and "UI_AUTH" in page
    assert warnings("0.0.0.0", with_page=False) == [api]
    assert warnings("0.0.0.0", api_key="key-1") == []  # the key guards the API and, as a password, the page
    assert warnings("127.0.0.1") == []


def test_host_rules() -> None:
    from askany.server.middleware import allowed_hosts, host_of

    assert allowed_hosts([]) == ["localhost", "127.0.0.1", "::1"]
    assert allowed_hosts(["[0:0::1]", "Askany.LAN"], "192.168.1.5")[3:] == ["192.168.1.5", "askany.lan"]
    assert allowed_hosts([], "0.0.0.0") == allowed_hosts([], "::") == allowed_hosts([])
    assert host_of("127.0.0.1:9100") == "127.0.0.1" and host_of("[::1]:80") == "::1"
    assert host_of("Example.COM") == "example.com"
    for forged in ["evil@127.0.0.1", "127.0.0.1:99999", "127.0.0.1/x", "[::1", "", "127.0.0.1:port"]:
        assert host_of(forged) is None, forged
    assert host_of("http://localhost:3000", origin=True) == "localhost"
    for origin in ["null", "file:///x", "http://user@localhost", "localhost:3000", "chrome-extension://abc"]:
        assert host_of(origin, origin=True) is None, origin


def test_websockets_pass_the_same_gate() -> None:
    from askany.server.middleware import HostGate, allowed_hosts

    reached: list[str] = []
    sent: list[dict] = []

    async def app(scope: dict, receive: object, send: object) -> None:
        reached.append(scope["type"])

    async def receive() -> dict:
        return {"type": "websocket.connect"}

    async def send(message: dict) -> None:
        sent.append(message)

    gate = HostGate(app, allowed_hosts([]))
    asyncio.run(gate({"type": "websocket", "path": "/", "headers": [(b"host", b"evil.example")]}, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008}] and reached == []
    asyncio.run(gate({"type": "websocket", "path": "/", "headers": [(b"host", b"localhost:1"),
                                                                     (b"origin", b"http://evil.example")]},
                     receive, send))
    assert len(sent) == 2 and reached == []
    asyncio.run(gate({"type": "websocket", "path": "/", "headers": [(b"host", b"localhost:1")]}, receive, send))
    assert reached == ["websocket"]
