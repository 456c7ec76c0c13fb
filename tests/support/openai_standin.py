"""A stand-in OpenAI-compatible chat server on 127.0.0.1 that replays scripted SSE chunks."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StandInServer:
    """An OpenAI-compatible chat server on 127.0.0.1 that replays scripted SSE chunks."""

    def __init__(self, chunks: list[dict[str, Any]] | Callable[[dict[str, Any]], list[dict[str, Any]]],
                 status: int = 200, error_body: bytes = b'{"error": {"message": "invalid api key"}}'):
        """`chunks` may depend on the request: pass a function of the request body.

        With a `status` other than 200 the server answers `error_body` as JSON instead of a stream.
        """
        self.chunks, self.status, self.error_body = chunks, status, error_body
        # Headers are kept as http.server parsed them: looked up case-insensitively, as HTTP means
        # them (the openai SDK sends "authorization", older clients "Authorization").
        self.requests: list[tuple[str, Message, dict[str, Any]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, self.headers, body))
                self.send_response(server.status)
                if server.status != 200:
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(server.error_body)
                    return
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                chunks = server.chunks(body) if callable(server.chunks) else server.chunks
                for chunk in chunks:
                    self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def delta(**fields: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": fields}]}
