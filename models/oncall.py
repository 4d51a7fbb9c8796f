"""On-call overrides added through the API, and the secret calendar feeds of people.

An override row is what oncall.yaml's `overrides` are, kept in the database so that a group's
lead can record a swap or a leave without editing the policy; both count (services/oncall.py
merges them, the policy's first). A feed row holds the nonce a person's calendar feed URL is
signed with: a new row (a new nonce) voids the old URL, deleting it revokes the feed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from itilflow.models.db import UTCDateTime


class OnCallOverride(SQLModel, table=True):
    __tablename__ = "oncall_override"

    id: int | None = Field(default=None, primary_key=True)
    group_name: str = Field(index=True, max_length=64)
    person: str = Field(max_length=64)
    # Only where this person would be on call (a leave); None: for the whole group (a swap).
    instead_of: str | None = Field(default=None, max_length=64)
    starts_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    ends_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    note: str = Field(default="", max_length=200)
    created_by: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class OnCallFeed(SQLModel, table=True):
    __tablename__ = "oncall_feed"

    username: str = Field(primary_key=True, max_length=64)
    nonce: str = Field(max_length=64)
    created_by: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
