"""Principals, their tokens and roles: who is asking, and what they may do.

`Principal` is what an authenticated request carries; routes check `principal.has(role)` and
write `principal.name` as the actor of every timeline entry. The shared ITILFLOW_API_TOKEN is
the admin's bootstrap token (`BOOTSTRAP_ADMIN`): it makes the first real tokens and grants.

Pure rules and session work only: the gateway and the CLI do the I/O around them.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select

from itilflow.models.people import Engineer, Group, _name
from itilflow.models.principal import (
    GRANT_SUBJECTS,
    PRINCIPAL_KINDS,
    ROLES,
    ApiToken,
    RoleGrant,
)

BOOTSTRAP_ADMIN = "admin"
# The actor of what is done through the Prefect UI's forms: Prefect OSS has no users, so all
# that is known is that it was someone holding the Prefect server's credentials.
PREFECT_OPERATOR = "prefect-operator"
# Names a token or grant may not take: a timeline entry by either must mean what it says.
RESERVED_NAMES = {
    BOOTSTRAP_ADMIN: "the bootstrap token's name",
    PREFECT_OPERATOR: "the Prefect UI forms' actor",
}
TOKEN_PREFIX = "itf_"
# last_used_at is written at most this often per token: a write per request would cost the
# intake a transaction on every webhook.
LAST_USE_RESOLUTION = timedelta(minutes=1)

# A role's holder may also do what the implied roles may.
ROLE_IMPLIES: dict[str, frozenset[str]] = {
    "reporter": frozenset(),
    "agent": frozenset({"reporter"}),
    "group_lead": frozenset({"agent", "reporter"}),
    "approver": frozenset({"reporter"}),
    "change_manager": frozenset({"approver", "agent", "reporter"}),
    "admin": frozenset(ROLES),
}


class PrincipalError(ValueError):
    """A token or grant that cannot be made: unknown person, unknown role, bad name."""


@dataclass(frozen=True)
class Principal:
    """An authenticated person or integration, with every role it holds (implied ones too)."""

    name: str
    kind: str  # "person" | "integration"
    roles: frozenset[str] = frozenset()
    groups: frozenset[str] = field(default_factory=frozenset)

    def has(self, *roles: str) -> bool:
        """True when the principal holds any of `roles`."""
        return any(role in self.roles for role in roles)


def expand_roles(granted: set[str] | frozenset[str]) -> frozenset[str]:
    """The granted roles and every role they imply."""
    roles = set(granted)
    for role in granted:
        roles |= ROLE_IMPLIES.get(role, frozenset())
    return frozenset(roles)


def bootstrap_admin() -> Principal:
    """The holder of the shared ITILFLOW_API_TOKEN."""
    return Principal(name=BOOTSTRAP_ADMIN, kind="integration", roles=expand_roles({"admin"}))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _now() -> datetime:
    return datetime.now(UTC)


def _check_principal(session: Session, name: str, kind: str) -> None:
    if kind not in PRINCIPAL_KINDS:
        raise PrincipalError(f"kind: expected one of {', '.join(PRINCIPAL_KINDS)}, got {kind!r}")
    try:
        _name(name)
    except ValueError as exc:
        raise PrincipalError(f"name: {exc}") from None
    if name in RESERVED_NAMES:
        raise PrincipalError(f"{name!r} is {RESERVED_NAMES[name]}; choose another")
    if kind == "person":
        engineer = session.get(Engineer, name)
        if engineer is None:
            raise PrincipalError(f"there is no person {name!r} in the directory")
        if not engineer.active:
            raise PrincipalError(f"{name!r} is deactivated in the directory")


def create_token(
    *,
    session: Session,
    principal: str,
    kind: str,
    created_by: str,
    expires_in: timedelta | None = None,
    note: str = "",
    now: datetime | None = None,
) -> tuple[str, ApiToken]:
    """A new token for `principal`: the plain token (shown once) and its stored row."""
    _check_principal(session, principal, kind)
    now = now or _now()
    plain = new_token()
    row = ApiToken(
        principal=principal,
        kind=kind,
        token_hash=hash_token(plain),
        prefix=plain[: len(TOKEN_PREFIX) + 6],
        note=note,
        created_by=created_by,
        created_at=now,
        expires_at=now + expires_in if expires_in else None,
    )
    session.add(row)
    session.flush()
    return plain, row


def list_tokens(*, session: Session, principal: str | None = None) -> list[ApiToken]:
    query = select(ApiToken).order_by(col(ApiToken.id))
    if principal is not None:
        query = query.where(ApiToken.principal == principal)
    return list(session.exec(query))


def revoke_token(
    *, session: Session, token_id: int, revoked_by: str, now: datetime | None = None
) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise PrincipalError(f"there is no token {token_id}")
    if row.revoked_at is None:
        row.revoked_at = now or _now()
        row.revoked_by = revoked_by
        session.add(row)
    return row


def granted_roles(*, session: Session, name: str, kind: str, groups: frozenset[str]) -> set[str]:
    """The roles given to `name` itself and, for a person, to any of their groups."""
    subjects = [(kind, name)] + [("group", group) for group in groups]
    names = [subject for _, subject in subjects]
    rows = session.exec(select(RoleGrant).where(col(RoleGrant.subject).in_(names)))
    return {row.role for row in rows if (row.subject_kind, row.subject) in subjects}


def principal_named(*, session: Session, name: str, kind: str) -> Principal | None:
    """The principal as it stands now (roles from its grants and groups), or None for a person
    who is not in the directory or is deactivated."""
    groups: frozenset[str] = frozenset()
    if kind == "person":
        engineer = session.get(Engineer, name)
        if engineer is None or not engineer.active:
            return None
        groups = frozenset(engineer.memberships())
    roles = granted_roles(session=session, name=name, kind=kind, groups=groups)
    return Principal(name=name, kind=kind, roles=expand_roles(roles), groups=groups)


def find_token_principal(
    *, session: Session, token: str, now: datetime | None = None
) -> tuple[Principal, datetime | None] | None:
    """The principal a token belongs to and when the token expires (None: never), or None when
    it is unknown, revoked, expired, or its person is no longer active. Notes the use (at most
    once a minute: LAST_USE_RESOLUTION); the caller commits."""
    now = now or _now()
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).first()
    if row is None or not row.usable_at(now):
        return None
    principal = principal_named(session=session, name=row.principal, kind=row.kind)
    if principal is None:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USE_RESOLUTION:
        row.last_used_at = now
        session.add(row)
    return principal, row.expires_at


def authenticate_token(
    *, session: Session, token: str, now: datetime | None = None
) -> Principal | None:
    """The principal a token belongs to (see find_token_principal); the caller commits."""
    found = find_token_principal(session=session, token=token, now=now)
    return found[0] if found else None


def grant_role(
    *,
    session: Session,
    role: str,
    subject_kind: str,
    subject: str,
    granted_by: str,
    now: datetime | None = None,
) -> RoleGrant:
    """Give `role` to a person, a group or an integration (again: the existing grant)."""
    if role not in ROLES:
        raise PrincipalError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
    if subject_kind not in GRANT_SUBJECTS:
        raise PrincipalError(
            f"subject kind: expected one of {', '.join(GRANT_SUBJECTS)}, got {subject_kind!r}"
        )
    if subject_kind == "group":
        if session.get(Group, subject) is None:
            raise PrincipalError(f"there is no group {subject!r} in the directory")
    else:
        _check_principal(session, subject, subject_kind)
    existing = session.exec(
        select(RoleGrant).where(
            RoleGrant.role == role,
            RoleGrant.subject_kind == subject_kind,
            RoleGrant.subject == subject,
        )
    ).first()
    if existing is not None:
        return existing
    grant = RoleGrant(
        role=role,
        subject_kind=subject_kind,
        subject=subject,
        granted_by=granted_by,
        granted_at=now or _now(),
    )
    session.add(grant)
    session.flush()
    return grant


def revoke_role(*, session: Session, role: str, subject_kind: str, subject: str) -> bool:
    """Withdraw a grant; False when there was none."""
    grant = session.exec(
        select(RoleGrant).where(
            RoleGrant.role == role,
            RoleGrant.subject_kind == subject_kind,
            RoleGrant.subject == subject,
        )
    ).first()
    if grant is None:
        return False
    session.delete(grant)
    return True


def list_grants(*, session: Session) -> list[RoleGrant]:
    return list(
        session.exec(
            select(RoleGrant).order_by(
                col(RoleGrant.subject_kind), col(RoleGrant.subject), col(RoleGrant.role)
            )
        )
    )


def people_with_role(*, session: Session, role: str) -> list[str]:
    """Active people who hold `role` (or a role implying it), directly or through a group."""
    holding = {r for r, implied in ROLE_IMPLIES.items() if role == r or role in implied}
    grants = session.exec(select(RoleGrant).where(col(RoleGrant.role).in_(holding))).all()
    people = {g.subject for g in grants if g.subject_kind == "person"}
    groups = {g.subject for g in grants if g.subject_kind == "group"}
    names: list[str] = []
    for engineer in session.exec(select(Engineer).order_by(col(Engineer.username))):
        if engineer.active and (
            engineer.username in people or groups & set(engineer.memberships())
        ):
            names.append(engineer.username)
    return names
