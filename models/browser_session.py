"""Browser sign-in: the one-time sign-ins mailed to people, and the sessions they start.

A sign-in request is one press of the sign-in form: it holds the mailed code's HMAC and the
link's nonce hash, is used once (by the code or by the link, whichever comes first) and expires.
A press for a name that is not in the directory is stored too, without a person or a code, so
that the rate limit per client address counts it and the page can look the same either way.

A session's id is 32 random bytes; only its SHA-256 is stored (a stolen database holds no
usable cookie). Sessions are never deleted, only revoked or left to expire, so who was signed
in when stays on record.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from itilflow.models.db import UTCDateTime


class SigninRequest(SQLModel, table=True):
    __tablename__ = "signin_request"

    id: int | None = Field(default=None, primary_key=True)
    # None: the name given was not a person of the directory (or had no address on record).
    person: str | None = Field(default=None, index=True, max_length=64)
    client: str = Field(index=True, max_length=64)  # the client's address, for the rate limit
    code_hash: str | None = Field(default=None, max_length=64)  # HMAC-SHA256 of the code, hex
    link_hash: str | None = Field(default=None, max_length=64)  # SHA-256 of the link's nonce
    attempts: int = 0  # wrong codes entered
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class BrowserSession(SQLModel, table=True):
    __tablename__ = "browser_session"

    id: int | None = Field(default=None, primary_key=True)
    id_hash: str = Field(unique=True, max_length=64)  # SHA-256 of the cookie's value, hex
    person: str = Field(index=True, max_length=64)
    via: str = Field(max_length=16)  # "code", "link" or "oidc"
    client: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_seen_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    idle_expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    revoked_by: str | None = Field(default=None, max_length=64)

    def live_at(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.idle_expires_at and now < self.expires_at
