"""A stand-in Hugging Face Hub: a small threaded HTTP server on 127.0.0.1 for download tests.

It answers exactly the requests ``huggingface_hub`` 2.4 makes for
``snapshot_download`` (read from its source: ``hf_api.py``, ``file_download.py``):

* ``GET /api/models/{repo_id}/revision/{rev}`` (and ``/api/models/{repo_id}``):
  the repository info, whose ``sha`` is the commit and ``siblings`` the file list;
* ``GET /api/models/{repo_id}/tree/{rev}?recursive=True``: the file listing with
  sizes, git blob ids and LFS sha256, which the hub caches and checks against;
* ``HEAD``/``GET /{repo_id}/resolve/{rev}/{filename}``: the file, with ``ETag``,
  ``X-Repo-Commit``, ``Content-Length``, ``Accept-Ranges`` and HTTP ``Range``
  (206 + ``Content-Range``) so an interrupted download can resume;
* errors the way the hub reports them (``X-Error-Code: RepoNotFound``, ...).

It also serves plain files (HanLP's zips) at any path given to ``add_file``. Tests
can cut the next responses off halfway (``cut_off``) or fail them with a status
(``fail``), and read back every request in ``requests``. It doubles as an HTTP
proxy: a request in absolute form (``GET http://host/path``, as clients send it
to the proxy named in ``HTTP_PROXY``) is served as if for ``/path`` and recorded
with ``proxied=True``.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".zip", ".model")


@dataclass
class RepoFile:
    path: str
    data: bytes
    oid: str  # git blob sha1, as the hub reports it
    sha256: str
    lfs: bool

    @property
    def etag(self) -> str:
        """The hub's ETag: the sha256 for LFS files, the git blob id otherwise."""
        return self.sha256 if self.lfs else self.oid


@dataclass
class Repo:
    repo_id: str
    commit: str
    files: dict[str, RepoFile] = field(default_factory=dict)


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    proxied: bool = False


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """Serve repositories built from local folders; use as a context manager."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.plain_files: dict[str, bytes] = {}
        self.requests: list[Request] = []
        self._cut: dict[str, int] = {}
        self._fail: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ content
    def add_repo(self, repo_id: str, folder: Path, extra_files: dict[str, bytes] | None = None) -> str:
        """Publish every file under `folder` (plus `extra_files`) as `repo_id`; return its commit sha."""
        files: dict[str, bytes] = {}
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                files[path.relative_to(folder).as_posix()] = path.read_bytes()
        files.update(extra_files or {})
        repo = Repo(repo_id, commit="")
        for name, data in files.items():
            repo.files[name] = RepoFile(name, data, git_blob_id(data), hashlib.sha256(data).hexdigest(),
                                        lfs=name.endswith(LFS_SUFFIXES))
        listing = "".join(f"{f.path}:{f.oid}\n" for f in repo.files.values())
        repo.commit = hashlib.sha1(f"{repo_id}\n{listing}".encode()).hexdigest()
        self.repos[repo_id] = repo
        return repo.commit

    def add_file(self, url_path: str, data: bytes) -> str:
        """Serve `data` at `url_path` (for example `/hanlp/tok/x.zip`); return its full URL."""
        self.plain_files["/" + url_path.lstrip("/")] = data
        return self.url + "/" + url_path.lstrip("/")

    # ------------------------------------------------------------------ faults
    def cut_off(self, path_suffix: str, times: int = 1) -> None:
        """The next `times` GETs of a path ending in `path_suffix` send half the body, then close."""
        self._cut[(path_suffix, "GET")] = times

    def fail(self, path_suffix: str, status: int = 500, times: int = 1, method: str | None = None) -> None:
        """The next `times` requests (of `method`, or any) for a path ending in `path_suffix` answer `status`."""
        self._fail[(path_suffix, method)] = (status, times)

    def clear_faults(self) -> None:
        self._cut.clear()
        self._fail.clear()

    def _take(self, table: dict, method: str, path: str) -> object | None:
        """Use up one injected fault matching this request, if any is left."""
        with self._lock:
            for (suffix, wanted), value in list(table.items()):
                if not path.endswith(suffix) or wanted not in (None, method):
                    continue
                remaining = value[1] if isinstance(value, tuple) else value
                if remaining <= 0:
                    continue
                table[(suffix, wanted)] = (value[0], remaining - 1) if isinstance(value, tuple) else remaining - 1
                return value
        return None

    def gets(self, path_suffix: str) -> list[Request]:
        """The GET requests made for a path ending in `path_suffix`."""
        return [r for r in self.requests if r.method == "GET" and r.path.endswith(path_suffix)]

    # ------------------------------------------------------------------ server
    @property
    def url(self) -> str:
        assert self._server is not None, "start the hub first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeHub

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    # ------------------------------------------------------------------ routing
    def _serve(self, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        proxied = self.path.startswith(("http://", "https://"))
        self.fake.requests.append(Request(self.command, path, self.headers.get("Range"), proxied))
        failure = self.fake._take(self.fake._fail, self.command, path)
        if failure is not None:
            return self._json({"error": "injected failure"}, status=failure[0], head=head)
        if path in self.fake.plain_files:
            return self._send_bytes(self.fake.plain_files[path], {}, head)
        if path.startswith("/api/models/"):
            return self._api(path.removeprefix("/api/models/"), head)
        if "/resolve/" in path:
            return self._resolve(path, head)
        return self._json({"error": "not found"}, status=404, head=head)

    def _repo_and_rest(self, path: str, marker: str) -> tuple[Repo | None, str, str]:
        """Split `org/name{marker}rev/rest` into the repo, the revision and the rest."""
        repo_id, _, tail = path.partition(marker)
        revision, _, rest = tail.partition("/")
        return self.fake.repos.get(repo_id.strip("/")), revision, rest

    def _api(self, path: str, head: bool) -> None:
        if "/tree/" in path:
            repo, revision, _ = self._repo_and_rest(path, "/tree/")
            if self._missing(repo, revision, head):
                return
            return self._json(self._tree(repo), head=head)
        repo, revision, _ = self._repo_and_rest(path, "/revision/") if "/revision/" in path \
            else (self.fake.repos.get(path.strip("/")), "main", "")
        if self._missing(repo, revision, head):
            return
        return self._json({
            "id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.commit, "private": False,
            "gated": False, "disabled": False, "lastModified": "2024-01-01T00:00:00.000Z",
            "siblings": [{"rfilename": name} for name in repo.files],
        }, head=head)

    def _tree(self, repo: Repo) -> list[dict]:
        entries: list[dict] = []
        folders = sorted({"/".join(p.split("/")[:i]) for p in repo.files for i in range(1, p.count("/") + 1)})
        for folder in folders:
            entries.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": folder})
        for f in repo.files.values():
            entry = {"type": "file", "oid": f.oid, "size": len(f.data), "path": f.path}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": 134}
            entries.append(entry)
        return entries

    def _resolve(self, path: str, head: bool) -> None:
        repo, revision, filename = self._repo_and_rest(path, "/resolve/")
        if self._missing(repo, revision, head):
            return
        file = repo.files.get(filename)
        if file is None:
            return self._json({"error": "Entry not found"}, status=404, head=head,
                              headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.commit})
        headers = {"ETag": f'"{file.etag}"', "X-Repo-Commit": repo.commit}
        return self._send_bytes(file.data, headers, head)

    def _missing(self, repo: Repo | None, revision: str, head: bool) -> bool:
        if repo is None:
            self._json({"error": "Repository not found"}, status=404, head=head,
                       headers={"X-Error-Code": "RepoNotFound"})
            return True
        if revision not in ("main", repo.commit):
            self._json({"error": "Invalid rev id"}, status=404, head=head,
                       headers={"X-Error-Code": "RevisionNotFound"})
            return True
        return False

    # ------------------------------------------------------------------ responses
    def _json(self, data: object, status: int = 200, head: bool = False,
              headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_bytes(self, data: bytes, headers: dict[str, str], head: bool) -> None:
        start, end, status = 0, len(data) - 1, 200
        match = _RANGE.match(self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = min(int(match.group(2)), len(data) - 1) if match.group(2) else len(data) - 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:end + 1]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if head:
            return
        path = unquote(urlsplit(self.path).path)
        if self.fake._take(self.fake._cut, "GET", path) is not None and len(body) > 1:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)
