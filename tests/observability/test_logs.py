"""Log lines: a level and the logger's name on each, JSON on request, and the gateway's access
log (method, path, status, duration, principal) that never holds a token, a code or a cookie."""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from itilflow.gateway.app import create_app
from itilflow.logs import JsonFormatter
from tests.faults.gateway_support import RecordingChangeEngine
from tests.support.principals import bearer_of

ACCESS = "itilflow.gateway.access"


@pytest.fixture
def gateway(rt: Any) -> Iterator[TestClient]:
    with TestClient(create_app(rt.settings, rt.policies, RecordingChangeEngine())) as client:
        yield client


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == ACCESS]


def test_a_request_is_logged_with_its_status_duration_and_principal(
    rt: Any, gateway: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    admin = bearer_of(rt.settings.api_token.get_secret_value())
    assert gateway.get("/api/incidents?limit=5", headers=admin).status_code == 200
    assert gateway.get("/api/incidents").status_code == 401
    ok, refused = access_lines(caplog)
    assert ok.getMessage().startswith("GET /api/incidents?limit=5 200 ")
    assert ok.getMessage().endswith(" ms by admin")
    assert (ok.method, ok.path, ok.status, ok.principal) == (
        "GET",
        "/api/incidents?limit=5",
        200,
        "admin",
    )
    assert ok.duration_ms >= 0
    assert refused.status == 401 and refused.principal is None
    assert " by " not in refused.getMessage()


def test_tokens_codes_and_cookies_never_reach_the_log(
    rt: Any, gateway: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    link_token = secrets.token_urlsafe(40)
    code = "731942"
    cookie = secrets.token_urlsafe(32)
    bearer = rt.settings.api_token.get_secret_value()
    gateway.cookies.set("itilflow_session", cookie)
    headers = {"Authorization": f"Bearer {bearer}"}
    gateway.get(f"/surveys/{link_token}?score=5&code={code}", headers=headers)
    gateway.get(f"/approvals/{link_token}", headers=headers)
    gateway.post(f"/signin/link/{link_token}", data={"code": code, "csrf": "x"})
    gateway.get(f"/approvals/{link_token}/extra?token={link_token}")  # no such route
    gateway.get(f"/api/incidents?assignee=lin&access_token={bearer}", headers=headers)

    lines = access_lines(caplog)
    assert len(lines) == 5
    text = "\n".join(
        [record.getMessage() for record in lines]
        + [JsonFormatter().format(record) for record in lines]
    )
    for secret in (link_token, code, cookie, bearer):
        assert secret not in text
    paths = [record.path for record in lines]
    assert paths[0] == "/surveys/{token}?score=…&code=…"
    assert paths[1] == "/approvals/{token}"
    assert paths[2] == "/signin/link/{token}"
    assert paths[3] == "/approvals/…/extra?token=…"
    assert paths[4] == "/api/incidents?assignee=lin&access_token=…"


def test_probes_and_scrapes_that_succeed_are_debug_lines(
    gateway: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=ACCESS)
    gateway.get("/health/live")
    gateway.get("/metrics")  # refused: not on loopback, no token
    live, metrics = access_lines(caplog)
    assert (live.levelno, live.path) == (logging.DEBUG, "/health/live")
    assert (metrics.levelno, metrics.status) == (logging.INFO, 401)


def test_the_access_log_can_be_switched_off(rt: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    settings = rt.settings.model_copy(update={"access_log": False})
    with TestClient(create_app(settings, rt.policies, RecordingChangeEngine())) as client:
        client.get("/health/live")
    assert access_lines(caplog) == []


def test_a_json_line_has_time_level_logger_message_and_the_fields() -> None:
    record = logging.LogRecord(ACCESS, logging.INFO, __file__, 1, "GET %s", ("/x",), None)
    record.status = 200
    record.principal = "lin"
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "INFO" and line["logger"] == ACCESS and line["message"] == "GET /x"
    assert line["status"] == 200 and line["principal"] == "lin"
    assert line["time"].endswith("+00:00")


def _log_from_the_cli(**env: str) -> str:
    script = (
        "import logging; from itilflow.cli import _configure_logging; _configure_logging(); "
        "logging.getLogger('itilflow.test').warning('careful'); "
        "logging.getLogger('itilflow.test').debug('detail')"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stderr


def test_the_cli_logs_text_with_the_level_by_default_and_json_on_request() -> None:
    text = _log_from_the_cli(ITILFLOW_LOG_FORMAT="text")
    assert " WARNING itilflow.test careful" in text and "detail" not in text
    lines = _log_from_the_cli(ITILFLOW_LOG_FORMAT="json", ITILFLOW_LOG_LEVEL="debug")
    entries = [json.loads(line) for line in lines.splitlines()]
    assert [(e["level"], e["logger"], e["message"]) for e in entries] == [
        ("WARNING", "itilflow.test", "careful"),
        ("DEBUG", "itilflow.test", "detail"),
    ]


def test_a_bad_log_setting_is_said_and_the_defaults_kept() -> None:
    text = _log_from_the_cli(ITILFLOW_LOG_FORMAT="xml")
    assert "log settings ignored" in text and "log_format" in text
    assert " WARNING itilflow.test careful" in text


def test_uvicorn_logs_through_the_process_logging_and_leaves_the_access_log_to_us(
    rt: Any,
) -> None:
    from itilflow.gateway.server import server_config

    config = server_config(object(), rt.settings)
    assert config.log_config is None and config.access_log is False
