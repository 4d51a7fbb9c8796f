"""A tiny real service for change tests: its health endpoint reads a config file on every request.

    with ConfigService(tmp_path / "app.conf") as service:
        httpx.get(f"{service.url}/health").text  # "ok version=1" (or 503 "broken ..." )

`GET /health` answers 200 with `ok <first line of the config>`, or 503 when the config contains
the word `broken` or is missing. `GET /slow?seconds=S` answers after S seconds (time-out tests).
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/health":
            try:
                config = self.server.config.read_text()
            except FileNotFoundError:
                self._answer(503, "broken: no config")
                return
            first = config.splitlines()[0] if config.strip() else ""
            if "broken" in config:
                self._answer(503, f"broken {first}")
            else:
                self._answer(200, f"ok {first}")
        elif parts.path == "/slow":
            seconds = float(parse_qs(parts.query).get("seconds", ["5"])[0])
            time.sleep(seconds)
            self._answer(200, "slow ok")
        else:
            self._answer(404, "not found")

    def _answer(self, status: int, text: str) -> None:
        payload = text.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (time-out tests)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    config: Path


class ConfigService:
    """The service on 127.0.0.1 and a free port, serving `config`."""

    def __init__(self, config: Path) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.config = config
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
