"""Who acts: API tokens of people and named integrations, and the roles given to them.

A principal is a person of the directory (an `Engineer`, by username) or a named integration (an
Alertmanager, a monitoring system). A token is random, shown once and stored only as its SHA-256
(a token is 32 random bytes, so a fast hash is enough: there is nothing to guess from). Roles are
given to people, to groups (every member has them) and to integrations.

A token is never deleted, only revoked, so its last use stays on record. A grant that is
withdrawn is deleted; the command that withdrew it says so in its output and log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from itilflow.models.db import UTCDateTime

# What each role may do is in services/principals.py (ROLE_IMPLIES) and on the routes.
ROLES: tuple[str, ...] = ("reporter", "agent", "group_lead", "approver", "change_manager", "admin")
Role = Literal["reporter", "agent", "group_lead", "approver", "change_manager", "admin"]
PRINCIPAL_KINDS: tuple[str, ...] = ("person", "integration")
PrincipalKind = Literal["person", "integration"]
GRANT_SUBJECTS: tuple[str, ...] = ("person", "group", "integration")
GrantSubject = Literal["person", "group", "integration"]


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    principal: str = Field(index=True, max_length=64)
    kind: str = Field(max_length=16)  # PrincipalKind
    token_hash: str = Field(unique=True, max_length=64)  # SHA-256, hex
    # The token's first characters, so a person can tell their tokens apart in `token list`.
    prefix: str = Field(max_length=12)
    note: str = Field(default="", max_length=200)
    created_by: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    last_used_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    revoked_by: str | None = Field(default=None, max_length=64)

    def usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


class RoleGrant(SQLModel, table=True):
    __tablename__ = "role_grant"
    __table_args__ = (
        UniqueConstraint("role", "subject_kind", "subject", name="role_grant_once_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    role: str = Field(max_length=32)  # Role
    subject_kind: str = Field(max_length=16)  # GrantSubject
    subject: str = Field(index=True, max_length=64)
    granted_by: str = Field(max_length=64)
    granted_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
