"""Shared fixtures: one Prefect test server for the session, real SMTP and HTTP peers, a
gateway app on a fresh database, and the clock."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from itilflow import clock, runtime
from itilflow.demo import load_people
from itilflow.settings import Settings
from tests.support.alertmanager import alertmanager_factory  # noqa: F401
from tests.support.fixtures import http_sink, smtp_server  # noqa: F401
from tests.support.http_sink import HttpSink
from tests.support.smtp import SmtpCapture


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    # The test server's telemetry writes race its own SQLite writes; nothing is sent out anyway.
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def _reset_clock() -> Iterator[None]:
    clock.reset()
    yield
    clock.reset()


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "api_token": SecretStr(secrets.token_urlsafe(16)),
        "secret_key": SecretStr(secrets.token_urlsafe(16)),
        "public_url": "http://testserver",
        "smtp_host": "127.0.0.1",
        "smtp_port": 9,  # nothing listens: tests that mail pass their SMTP server's port
        "smtp_timeout": 3.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def write_apprise_config(path: Path, sink: HttpSink, tags: list[str]) -> Path:
    lines = ["urls:", f"  - {sink.apprise_url()}:", f"    - tag: {', '.join(tags)}"]
    path.write_text("\n".join(lines) + "\n")
    return path


ALL_TAGS = [
    "oncall-chat",
    "sms",
    "team-chat",
    "servicedesk-chat",
    "hardware-chat",
    "applications-chat",
    "network-chat",
    "dba-chat",
    "security-chat",
]


@pytest.fixture
def settings(
    tmp_path: Path,
    smtp_server: SmtpCapture,  # noqa: F811
    http_sink: HttpSink,  # noqa: F811
) -> Settings:
    return make_settings(
        tmp_path,
        smtp_port=smtp_server.port,
        apprise_config=write_apprise_config(tmp_path / "apprise.yaml", http_sink, ALL_TAGS),
    )


@pytest.fixture
def rt(settings: Settings) -> runtime.Runtime:
    current = runtime.configure(settings)
    load_people(settings)
    return current


@pytest.fixture
def client(rt: runtime.Runtime) -> Iterator[object]:
    from fastapi.testclient import TestClient

    from itilflow.gateway.app import create_app

    with TestClient(create_app(rt.settings, rt.policies)) as test_client:
        assert rt.settings.api_token is not None
        test_client.headers["Authorization"] = f"Bearer {rt.settings.api_token.get_secret_value()}"
        yield test_client
