"""Tests act as a real principal: a person of the directory (or a named integration) with a
token and roles, made the way `itilflow token create` and `itilflow role grant` make them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from itilflow.models import session_scope
from itilflow.services import principals


def token_for(
    engine: Engine,
    name: str,
    roles: Iterable[str] = (),
    *,
    kind: str = "person",
    expires_in: timedelta | None = None,
) -> str:
    """A new token for `name` (a person of the directory, or an integration), who is given
    `roles` first; the plain token."""
    with session_scope(engine) as session:
        for role in roles:
            principals.grant_role(
                session=session, role=role, subject_kind=kind, subject=name, granted_by="test"
            )
        plain, _ = principals.create_token(
            session=session,
            principal=name,
            kind=kind,
            created_by="test",
            expires_in=expires_in,
        )
    return plain


def bearer_of(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def as_person(rt: Any, name: str, roles: Iterable[str] = ("agent",)) -> dict[str, str]:
    """The Authorization header of `name` (a person of the demo directory) with `roles`."""
    return bearer_of(token_for(rt.engine, name, roles))
