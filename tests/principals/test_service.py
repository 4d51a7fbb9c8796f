"""services/principals.py: tokens stored hashed and shown once, roles from people, groups and
integrations with what they imply, and who holds a role."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from itilflow.models import ApiToken, RoleGrant, session_scope
from itilflow.services import directory, principals
from itilflow.services.principals import PrincipalError

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def make(rt: Any, name: str = "lin", kind: str = "person", **options: Any) -> str:
    with session_scope(rt.engine) as session:
        plain, _ = principals.create_token(
            session=session, principal=name, kind=kind, created_by="cli:test", **options
        )
    return plain


def authenticate(rt: Any, token: str, now: datetime | None = None) -> Any:
    with session_scope(rt.engine) as session:
        return principals.authenticate_token(session=session, token=token, now=now)


def grant(rt: Any, role: str, subject: str, kind: str = "person") -> None:
    with session_scope(rt.engine) as session:
        principals.grant_role(
            session=session, role=role, subject_kind=kind, subject=subject, granted_by="cli:test"
        )


def test_a_token_is_random_and_stored_only_as_its_hash(rt: Any) -> None:
    first, second = make(rt, note="laptop"), make(rt)
    assert first != second and first.startswith("itf_") and len(first) >= 4 + 43
    with Session(rt.engine) as session:
        rows = session.exec(select(ApiToken)).all()
    assert [row.token_hash for row in rows] == [
        principals.hash_token(first),
        principals.hash_token(second),
    ]
    assert all(first not in str(row.model_dump()) for row in rows)
    assert rows[0].prefix == first[:10] and rows[0].note == "laptop"
    assert rows[0].created_by == "cli:test"


@pytest.mark.parametrize(
    ("name", "kind", "says"),
    [
        ("nobody", "person", "no person 'nobody'"),
        ("admin", "integration", "bootstrap token's name"),
        ("admin", "person", "bootstrap token's name"),
        ("prefect-operator", "integration", "Prefect UI forms' actor"),
        ("Bad Name!", "integration", "name:"),
        ("lin", "robot", "kind: expected one of person, integration"),
    ],
)
def test_a_token_for_no_one_is_refused(rt: Any, name: str, kind: str, says: str) -> None:
    with pytest.raises(PrincipalError, match=says):
        make(rt, name, kind)
    with Session(rt.engine) as session:
        assert session.exec(select(ApiToken)).first() is None


def test_a_deactivated_person_gets_no_token_and_their_old_one_stops_working(rt: Any) -> None:
    token = make(rt, "zhou")
    assert authenticate(rt, token).name == "zhou"
    with session_scope(rt.engine) as session:
        directory.set_active(session, "people", "zhou", False)
    assert authenticate(rt, token) is None
    with pytest.raises(PrincipalError, match="deactivated"):
        make(rt, "zhou")


def test_revoked_and_expired_tokens_authenticate_no_one(rt: Any) -> None:
    expiring = make(rt, expires_in=timedelta(hours=1), now=NOW)
    assert authenticate(rt, expiring, now=NOW + timedelta(minutes=59)) is not None
    assert authenticate(rt, expiring, now=NOW + timedelta(hours=1)) is None
    revoked = make(rt)
    with session_scope(rt.engine) as session:
        row = session.exec(
            select(ApiToken).where(ApiToken.token_hash == principals.hash_token(revoked))
        ).one()
        principals.revoke_token(session=session, token_id=row.id, revoked_by="cli:test")
    assert authenticate(rt, revoked) is None
    assert authenticate(rt, principals.new_token()) is None
    with session_scope(rt.engine) as session, pytest.raises(PrincipalError, match="no token 99"):
        principals.revoke_token(session=session, token_id=99, revoked_by="cli:test")


def test_the_last_use_is_noted_at_most_once_a_minute(rt: Any) -> None:
    token = make(rt)

    def last_use() -> datetime | None:
        with Session(rt.engine) as session:
            return session.exec(select(ApiToken)).one().last_used_at

    assert last_use() is None
    authenticate(rt, token, now=NOW)
    authenticate(rt, token, now=NOW + timedelta(seconds=59))
    assert last_use() == NOW
    authenticate(rt, token, now=NOW + timedelta(seconds=61))
    assert last_use() == NOW + timedelta(seconds=61)


def test_roles_come_from_the_person_their_groups_and_what_they_imply(rt: Any) -> None:
    token = make(rt, "lin")  # lin is in servicedesk
    assert authenticate(rt, token).roles == frozenset()
    grant(rt, "agent", "servicedesk", kind="group")
    lin = authenticate(rt, token)
    assert lin.roles == {"agent", "reporter"} and "servicedesk" in lin.groups
    assert lin.has("reporter") and not lin.has("approver", "admin")
    grant(rt, "change_manager", "lin")
    assert authenticate(rt, token).roles == {"change_manager", "approver", "agent", "reporter"}
    assert principals.bootstrap_admin().roles == set(principals.ROLES)


def test_an_integration_holds_only_its_own_grants(rt: Any) -> None:
    token = make(rt, "alertmanager", "integration")
    grant(rt, "reporter", "alertmanager", kind="integration")
    found = authenticate(rt, token)
    assert (found.name, found.kind, found.roles) == ("alertmanager", "integration", {"reporter"})


def test_grants_are_checked_kept_once_and_withdrawn(rt: Any) -> None:
    with session_scope(rt.engine) as session:
        with pytest.raises(PrincipalError, match="role: expected one of"):
            principals.grant_role(
                session=session, role="boss", subject_kind="person", subject="lin", granted_by="t"
            )
        with pytest.raises(PrincipalError, match="no group 'ghosts'"):
            principals.grant_role(
                session=session, role="agent", subject_kind="group", subject="ghosts",
                granted_by="t",
            )  # fmt: skip
    grant(rt, "approver", "chen")
    grant(rt, "approver", "chen")
    with Session(rt.engine) as session:
        assert len(session.exec(select(RoleGrant)).all()) == 1
        assert [g.subject for g in principals.list_grants(session=session)] == ["chen"]
    with session_scope(rt.engine) as session:
        kwargs = {"session": session, "role": "approver", "subject_kind": "person"}
        assert principals.revoke_role(**kwargs, subject="chen") is True
        assert principals.revoke_role(**kwargs, subject="chen") is False


def test_people_with_a_role_directly_through_a_group_or_implied(rt: Any) -> None:
    grant(rt, "change_manager", "chen")
    grant(rt, "admin", "sun")
    grant(rt, "change_manager", "network", kind="group")  # zhao
    grant(rt, "agent", "lin")
    with Session(rt.engine) as session:
        assert principals.people_with_role(session=session, role="change_manager") == [
            "chen",
            "sun",
            "zhao",
        ]
    with session_scope(rt.engine) as session:
        directory.set_active(session, "people", "sun", False)
    with Session(rt.engine) as session:
        assert principals.people_with_role(session=session, role="change_manager") == [
            "chen",
            "zhao",
        ]
