"""The gateway's probes: /health/live (and /health) from memory, /health/ready checking the
database's schema and the Prefect server's /api/health with the stack's credentials."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import text

from itilflow.gateway.app import create_app
from itilflow.models import session_scope
from tests.faults.gateway_support import RecordingChangeEngine
from tests.support.smtp import free_port

PREFECT_CREDENTIALS = "itilflow:probe-test-password"


class _PrefectHealth(BaseHTTPRequestHandler):
    """Prefect's /api/health behind basic auth, as the server `itilflow up` starts has it."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        expected = "Basic " + base64.b64encode(PREFECT_CREDENTIALS.encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
        elif self.path != "/api/health":
            self.send_response(404)
        else:
            self.send_response(200)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def prefect_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PrefectHealth)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _client(rt: Any, **settings: Any) -> TestClient:
    app = create_app(
        rt.settings.model_copy(update=settings), rt.policies, change_engine=RecordingChangeEngine()
    )
    return TestClient(app)


def test_live_and_health_answer_without_a_token(rt: Any) -> None:
    with _client(rt, prefect_port=free_port()) as client:
        for path in ("/health", "/health/live"):
            answer = client.get(path)
            assert answer.status_code == 200, path
            assert answer.json() == {"status": "ok"}


def test_ready_when_the_database_is_at_head_and_prefect_answers(rt: Any, prefect_port: int) -> None:
    auth = SecretStr(PREFECT_CREDENTIALS)
    with _client(rt, prefect_port=prefect_port, prefect_auth_string=auth) as client:
        answer = client.get("/health/ready")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "ok", "checks": ["database", "prefect"]}


def test_not_ready_names_prefect_when_it_refuses_the_credentials(
    rt: Any, prefect_port: int
) -> None:
    wrong = SecretStr("itilflow:not-the-password")
    with _client(rt, prefect_port=prefect_port, prefect_auth_string=wrong) as client:
        answer = client.get("/health/ready")
    assert answer.status_code == 503
    assert list(answer.json()["problems"]) == ["prefect"]
    assert "answered 401" in answer.json()["problems"]["prefect"]


def test_not_ready_names_prefect_when_nothing_listens(rt: Any) -> None:
    with _client(rt, prefect_port=free_port()) as client:
        answer = client.get("/health/ready")
        live = client.get("/health/live")
    assert answer.status_code == 503
    assert "does not answer" in answer.json()["problems"]["prefect"]
    assert live.status_code == 200


def test_not_ready_names_the_database_behind_the_code(rt: Any, prefect_port: int) -> None:
    auth = SecretStr(PREFECT_CREDENTIALS)
    with _client(rt, prefect_port=prefect_port, prefect_auth_string=auth) as client:
        with session_scope(rt.engine) as session:  # after the gateway's start-up check
            session.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        answer = client.get("/health/ready")
    assert answer.status_code == 503
    problems = answer.json()["problems"]
    assert list(problems) == ["database"]
    assert "revision 0001" in problems["database"] and "itilflow db upgrade" in problems["database"]
