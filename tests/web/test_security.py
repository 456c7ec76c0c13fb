"""The page served alone (`--ui`), attacked over raw HTTP: forged Host headers (DNS rebinding), foreign
Origins (cross-site pages), file routes and inputs naming URLs (requests to other hosts); then the
optional login (UI_AUTH, or the API keys) and the warning for an open page beyond loopback."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from askany.service import Service
from askany.web import serve

REMOTE = "93.184.215.14"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def page(make_app: Callable[..., Any]) -> Iterator[Callable[..., str]]:
    """Start the page alone on loopback with the given settings; returns its URL without the last slash."""
    running: list[Any] = []

    def start(**settings: object) -> str:
        server = serve(Service(app=make_app(**settings)), host="127.0.0.1", port=free_port(), block=False,
                       warm=False)
        running.append(server)
        return server.local_url.rstrip("/")

    yield start
    for server in running:
        server.close()


def send(url: str, method: str, path: str, host: str | None = None, origin: str | None = None,
         **kwargs: Any) -> httpx.Response:
    headers = {**({"Host": host} if host else {}), **({"Origin": origin} if origin else {}),
               **kwargs.pop("headers", {})}
    return httpx.request(method, url + path, headers=headers, timeout=30, **kwargs)


REQUESTS = [("POST", "/gradio_api/call/list_documents", {"json": {"data": [""]}}), ("GET", "/", {}),
            ("GET", "/config", {}), ("GET", "/gradio_api/info", {}),
            ("OPTIONS", "/gradio_api/call/delete_document", {"headers": {"Access-Control-Request-Method": "POST"}})]


def test_a_rebound_host_name_is_refused_on_every_route(page) -> None:
    url = page()
    port = url.rsplit(":", 1)[1]
    for method, path, extra in REQUESTS:
        response = send(url, method, path, f"evil.example:{port}", f"http://evil.example:{port}", **extra)
        assert response.status_code == 400, (method, path, response.text[:200])
        assert "ALLOWED_HOSTS" in response.json()["error"]["message"]
        assert "access-control-allow-origin" not in response.headers


def test_a_foreign_origin_is_refused_even_with_a_loopback_host(page) -> None:
    url = page()
    for origin in ["http://evil.example", "https://127.0.0.1.evil.example", "null", "http://user@evil.example"]:
        for method, path, extra in REQUESTS:
            response = send(url, method, path, origin=origin, **extra)
            assert response.status_code == 403, (origin, method, path, response.text[:200])
            assert response.json()["error"]["code"] == "origin_not_allowed"
            assert "access-control-allow-origin" not in response.headers


def test_loopback_names_and_allowed_hosts_are_served(page) -> None:
    url = page(allowed_hosts="askany.lan, *.corp.example")
    port = url.rsplit(":", 1)[1]
    for host in ["localhost", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", f"ASKANY.lan:{port}",
                 f"kb.corp.example:{port}"]:
        assert send(url, "GET", "/config", host).status_code == 200, host
    for host in [f"corp.example:{port}", f"kb.corp.example.evil.example:{port}", f"askany.lan.evil:{port}"]:
        assert send(url, "GET", "/config", host).status_code == 400, host
    # The page's own origins pass, and only they are echoed for CORS.
    for origin in [f"http://askany.lan:{port}", "http://localhost:3000"]:
        response = send(url, "GET", "/gradio_api/info", f"askany.lan:{port}", origin)
        assert response.status_code == 200
        assert response.headers.get("access-control-allow-origin") in (None, origin)


REMOTE_FILES = [f"/gradio_api/file=http://{REMOTE}/x", f"/gradio_api/file=HTTPS://{REMOTE}/x",
                f"/gradio_api/file=http%3A%2F%2F{REMOTE}%2Fx", f"/gradio_api/file/http://{REMOTE}/x",
                f"//gradio_api//file=http://{REMOTE}/x", f"/gradio_api/proxy=http://{REMOTE}/x"]


def test_file_routes_never_open_a_connection_to_a_url(page, loopback_only: list[object]) -> None:
    url = page()
    for path in REMOTE_FILES:
        for method in ("GET", "HEAD"):
            response = httpx.request(method, url + path, timeout=30)
            assert response.status_code in (403, 404), (method, path, response.text[:200])
            assert loopback_only == [], path  # the network guard saw no lookup and no connection
    # The page's own files are still served.
    uploaded = httpx.post(f"{url}/gradio_api/upload", files={"files": ("a.md", b"# local\n", "text/markdown")})
    response = httpx.get(f"{url}/gradio_api/file={uploaded.json()[0]}", timeout=30)
    assert response.status_code == 200 and response.content == b"# local\n"


def test_an_input_file_given_as_a_url_is_not_downloaded(page, loopback_only: list[object]) -> None:
    url = page()
    remote = {"path": f"http://{REMOTE}/x.md", "meta": {"_type": "gradio.FileData"}, "orig_name": "x.md"}
    event = httpx.post(f"{url}/gradio_api/call/upload", json={"data": [[remote], "kb", ""]}, timeout=30)
    result = httpx.get(f"{url}/gradio_api/call/upload/{event.json()['event_id']}", timeout=30)
    assert "event: error" in result.text and "403" in result.text
    assert loopback_only == []


def test_ui_auth_logins(page) -> None:
    from gradio_client import Client

    url = page(ui_auth="alice:s3cret, bob:pa:ss", api_key="key-1")
    assert httpx.post(f"{url}/gradio_api/call/clear", json={"data": []}).status_code == 401
    for user, password in [("alice", "wrong"), ("carol", "s3cret"), ("bob", "pa"), ("alice", "key-1")]:
        assert httpx.post(f"{url}/login", data={"username": user, "password": password}).status_code == 400
        with pytest.raises(Exception, match="(?i)login|credentials|auth"):
            Client(url, auth=(user, password), verbose=False)
    chat, *_ = Client(url, auth=("bob", "pa:ss"), verbose=False).predict(api_name="/clear")
    assert chat == []


def test_without_ui_auth_an_api_key_is_the_password(page) -> None:
    url = page(api_key="key-1,key-2")
    assert httpx.post(f"{url}/login", data={"username": "me", "password": "key-3"}).status_code == 400
    login = httpx.post(f"{url}/login", data={"username": "me", "password": "key-2"})
    assert login.status_code == 200
    answer = httpx.post(f"{url}/gradio_api/call/clear", json={"data": []}, cookies=login.cookies)
    assert answer.status_code == 200 and "event_id" in answer.json()


def test_an_open_page_beyond_loopback_is_warned_about(make_app, make_settings, monkeypatch, caplog) -> None:
    from askany.web import warn_if_open
    from askany.web.serving import PageServer

    monkeypatch.setattr(PageServer, "run", lambda self: None)  # built and configured, never listening

    def warnings(host: str, **settings: object) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="askany"):
            serve(Service(app=make_app(**settings)), host=host, port=free_port(), warm=False)
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    open_page = warnings("0.0.0.0")
    assert len(open_page) == 1 and "0.0.0.0 without a login" in open_page[0] and "UI_AUTH" in open_page[0]
    assert warnings("0.0.0.0", ui_auth="alice:s3cret") == []

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="askany"):
        warn_if_open(make_settings(api_key="key-1"), "192.168.1.5")
        for host in ["127.0.0.1", "::1", "localhost"]:
            warn_if_open(make_settings(), host)
        assert not caplog.records
        warn_if_open(make_settings(), "192.168.1.5")
        assert [r.levelno for r in caplog.records] == [logging.WARNING]
