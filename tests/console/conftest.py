"""The console's pages through the real gateway app: people of the demo directory, signed in
with a real browser session (as the emailed code makes one), and incidents opened through the
API like every other source."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from itilflow.gateway.app import create_app
from itilflow.gateway.browser import SESSION_COOKIE
from itilflow.models import Incident, session_scope
from itilflow.services import principals, signin

LIMITS = signin.SessionLimits(idle=timedelta(hours=1), lifetime=timedelta(hours=8))


@pytest.fixture
def app(rt: Any) -> Any:
    return create_app(rt.settings, rt.policies)


@pytest.fixture
def browser(app: Any) -> Iterator[TestClient]:
    """A browser: no API token, keeps its cookies, does not follow redirects by itself."""
    with TestClient(app, follow_redirects=False) as client:
        yield client


@pytest.fixture
def api(app: Any, rt: Any) -> Iterator[TestClient]:
    """A tool with the bootstrap admin token, for opening incidents."""
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {rt.settings.api_token.get_secret_value()}"
        yield client


def grant(rt: Any, name: str, *roles: str) -> None:
    with session_scope(rt.engine) as session:
        for role in roles:
            principals.grant_role(
                session=session, role=role, subject_kind="person", subject=name, granted_by="test"
            )


def sign_in(client: TestClient, rt: Any, name: str, *roles: str) -> None:
    """`name` (a person of the demo directory) with `roles`, signed in in `client`."""
    grant(rt, name, *roles)
    with session_scope(rt.engine) as session:
        value, _ = signin.start_session(
            session=session, person=name, via="code", client="testclient", limits=LIMITS
        )
    client.cookies.set(SESSION_COOKIE, value)


def open_incident(api: TestClient, **values: Any) -> str:
    """A new incident through the API; its number."""
    body = {"title": "Payment module returns 500", "priority": "P1"} | values
    answer = api.post("/api/incidents", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()["number"]


def incident(rt: Any, number: str) -> Incident:
    with Session(rt.engine) as session:
        row = session.get(Incident, int(number.removeprefix("INC-")))
        assert row is not None
        return row


def set_fields(rt: Any, number: str, **values: Any) -> None:
    with session_scope(rt.engine) as session:
        row = session.get(Incident, int(number.removeprefix("INC-")))
        assert row is not None
        for key, value in values.items():
            setattr(row, key, value)
        session.add(row)


# The real gateway under uvicorn, for the browser tests (the sign-in browser test's fixture).
from tests.security.test_signin_browser import live_gateway  # noqa: E402, F401
