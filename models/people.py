"""Engineers, their groups and configuration items."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, Session, SQLModel, select


class Group(SQLModel, table=True):
    name: str = Field(primary_key=True, max_length=64)
    lead: str | None = Field(default=None, max_length=64)
    manager: str | None = Field(default=None, max_length=64)
    email: str | None = None


class Engineer(SQLModel, table=True):
    username: str = Field(primary_key=True, max_length=64)
    name: str
    email: str | None = None
    group_name: str = Field(foreign_key="group.name", index=True)
    skills: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    capacity: int = 5
    on_duty: bool = True
    language: str | None = None


class ConfigurationItem(SQLModel, table=True):
    name: str = Field(primary_key=True, max_length=200)
    kind: str = "server"
    criticality: str = "medium"
    owner_group: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


def list_engineers(*, session: Session, group: str | None = None) -> list[Engineer]:
    statement = select(Engineer)
    if group:
        statement = statement.where(Engineer.group_name == group)
    return list(session.exec(statement))


def get_engineer(*, session: Session, username: str | None) -> Engineer | None:
    return session.get(Engineer, username) if username else None


def get_group(*, session: Session, name: str | None) -> Group | None:
    return session.get(Group, name) if name else None


def upsert(*, session: Session, item: SQLModel) -> None:
    session.merge(item)
