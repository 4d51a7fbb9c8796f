"""Signed-in browsers for the console's page tests: a TestClient without the API token holding a
real session cookie, made as the sign-in makes it (services/signin.start_session)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from itilflow.gateway.browser import SESSION_COOKIE
from itilflow.models import session_scope
from itilflow.services import principals, signin

HOSTILE = "<script>alert('x')</script>"


def grant(rt: Any, name: str, roles: Iterable[str]) -> None:
    with session_scope(rt.engine) as session:
        for role in roles:
            principals.grant_role(
                session=session, role=role, subject_kind="person", subject=name, granted_by="test"
            )


def sign_in(rt: Any, client: Any, name: str, roles: Iterable[str] = ()) -> Any:
    """`client` signed in as `name` (a person of the demo directory) holding `roles`."""
    grant(rt, name, roles)
    limits = signin.SessionLimits(idle=timedelta(hours=1), lifetime=timedelta(hours=8))
    with session_scope(rt.engine) as session:
        value, _ = signin.start_session(
            session=session, person=name, via="test", client="testclient", limits=limits
        )
    client.cookies.set(SESSION_COOKIE, value)
    return client


def assert_escaped(html: str, text: str = HOSTILE) -> None:
    assert text not in html, "a value from a record was not escaped"
    assert "&lt;script&gt;" in html
