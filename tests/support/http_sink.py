"""A real local HTTP server (stdlib, in a thread) that records what is POSTed to it.

    with HttpSink() as sink:
        await asend_chat(title="t", body="b", tags=(), config=None, urls=[sink.apprise_url("/h")])
        [request] = sink.wait_for(1)
        assert request.json["title"] == "t"

`sink.status = 500` makes every later request fail (the body is still recorded).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass(frozen=True)
class CapturedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _capture(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        sink = self.server.sink
        sink._record(CapturedRequest(self.command, self.path, dict(self.headers.items()), body))
        status = sink.status
        payload = b'{"ok": true}' if status < 400 else b'{"ok": false}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_POST = do_PUT = do_PATCH = _capture

    def log_message(self, format: str, *args: Any) -> None:
        # Keep test output clean; the requests are inspected through the sink instead.
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sink: HttpSink


class HttpSink:
    """A capturing HTTP server on 127.0.0.1 and a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.status = 200
        self._requests: list[CapturedRequest] = []
        self._changed = threading.Condition()
        self._server = _Server((host, port), _Handler)
        self._server.sink = self
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def apprise_url(self, path: str = "/notify") -> str:
        """An apprise `json://` URL that posts here."""
        return f"json://{self.host}:{self.port}/{path.lstrip('/')}"

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _record(self, request: CapturedRequest) -> None:
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()

    @property
    def requests(self) -> list[CapturedRequest]:
        with self._changed:
            return list(self._requests)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[CapturedRequest]:
        """Block until at least `n` requests arrived; AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {n} request(s) within {timeout}s, got {len(self._requests)}"
                    )
                self._changed.wait(left)
            return list(self._requests)

    def clear(self) -> None:
        with self._changed:
            self._requests.clear()
