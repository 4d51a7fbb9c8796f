"""The demo inbox: a local SMTP server and chat endpoint that keep what itilflow sends.

`itilflow up --demo` starts it and points email and apprise at it, so a new user sees every
notification in `<data>/demo-inbox/` (one .eml file per mail, chat.jsonl for chat) without
configuring a mail server or a chat service.
"""

from __future__ import annotations

import json
import signal
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from itilflow.policies import Policies


class _MailHandler:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            number = len(list(self.folder.glob("*.eml"))) + 1
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            path = self.folder / f"{number:05d}-{stamp}.eml"
            path.write_bytes(envelope.original_content or envelope.content)
        return "250 kept in the demo inbox"


def _chat_handler(path: Path) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 1_000_000))
            try:
                message = json.loads(body)
            except ValueError:
                message = {"raw": body.decode("utf-8", "replace")}
            record = {"at": datetime.now(UTC).isoformat(), "path": self.path, **message}
            with lock, path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def chat_tags(policies: Policies) -> list[str]:
    routing = policies.routing
    tags = {tag for tags in routing.priority_tags.values() for tag in tags}
    tags |= {tag for tags in routing.group_tags.values() for tag in tags}
    return sorted(tags)


def write_apprise_config(path: Path, chat_port: int, tags: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Written by `itilflow up --demo`: every chat tag goes to the demo inbox.\n"
        f"urls:\n  - json://127.0.0.1:{chat_port}/chat:\n    - tag: {', '.join(tags)}\n"
    )
    return path


def serve_inbox(folder: Path, smtp_port: int, chat_port: int) -> None:
    """Run until SIGTERM or SIGINT."""
    mail = folder / "mail"
    mail.mkdir(parents=True, exist_ok=True)
    controller = Controller(_MailHandler(mail), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    chat = ThreadingHTTPServer(("127.0.0.1", chat_port), _chat_handler(folder / "chat.jsonl"))
    thread = threading.Thread(target=chat.serve_forever, daemon=True)
    thread.start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    chat.shutdown()
    controller.stop()
