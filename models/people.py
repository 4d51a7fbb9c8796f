"""Engineers, their groups and configuration items: the team's directory.

In the style of the FastAPI full-stack template: `ThingBase` holds the fields a client sends,
`Thing(ThingBase, table=True)` the stored row, `ThingCreate`, `ThingUpdate` (every field
optional: PATCH) and `ThingPublic` what the API answers. These schemas check a record on its own
(an email's shape, a time zone, capacity >= 0); the checks against other records (an unknown
group, a dependency on an unknown CI) are in `itilflow.services.directory`.

Nothing here is ever deleted: incidents, changes and problems refer to these rows by name. A row
that is gone from the team is deactivated (`active = False`) instead.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, field_validator
from sqlalchemy import JSON, Column, text
from sqlmodel import Field, Session, SQLModel, select

from itilflow.clock import time_zone_name

# The message languages there are templates for (notifications/templates/*).
LANGUAGES: tuple[str, ...] = ("en", "zh_CN")
Language = Literal["en", "zh_CN"]
# Rows that existed before the column (revision 0002) are active.
ACTIVE_DEFAULT = text("true")
CRITICALITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
Criticality = Literal["low", "medium", "high", "critical"]

# A name a person types and other records refer to: a username, a group, a skill, a CI.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:/\-]*$")
# Only the shape: a mail server is the judge of the rest. No new dependency (email-validator).
_EMAIL = re.compile(r"^[^@\s,;<>\x00-\x1f]+@[^@\s,;<>\x00-\x1f]+\.[^@\s,;<>.\x00-\x1f]+$")


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            "expected a name of letters, digits and _ . @ : / - (no spaces), starting with a "
            f"letter or digit, got {value!r}"
        )
    return value


def _email(value: str) -> str:
    value = value.strip()
    if not _EMAIL.match(value):
        raise ValueError(f"expected an email address like lin@example.com, got {value!r}")
    return value


def _text(value: str) -> str:
    # PostgreSQL refuses NUL in text; other control characters only garble a mail header.
    if any(ord(char) < 32 for char in value):
        raise ValueError("control characters (line breaks, tabs, NUL) are not allowed")
    return value


def _names(values: list[str]) -> list[str]:
    # Order kept (an engineer's first group is the primary one), repeats dropped.
    return list(dict.fromkeys(_name(value) for value in values))


def _blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


Name = Annotated[str, AfterValidator(_name)]
Email = Annotated[str, AfterValidator(_email)]
Text = Annotated[str, AfterValidator(_text)]
TimeZoneName = Annotated[str, AfterValidator(time_zone_name)]
Names = Annotated[list[str], AfterValidator(_names)]
OptionalEmail = Annotated[Email | None, BeforeValidator(_blank_to_none)]
OptionalTimeZone = Annotated[TimeZoneName | None, BeforeValidator(_blank_to_none)]
OptionalLanguage = Annotated[Language | None, BeforeValidator(_blank_to_none)]
OptionalName = Annotated[Name | None, BeforeValidator(_blank_to_none)]


# ------------------------------------------------------------------------------------- groups


# Columns of the baseline schema keep their types (models/migrations/versions/0001_baseline.py):
# the Create schemas hold the length limits instead of an ALTER of every table.


class GroupBase(SQLModel):
    # Lead, manager and escalation contacts are engineers' usernames (notifications mail them).
    lead: str | None = Field(default=None, max_length=64)
    manager: str | None = Field(default=None, max_length=64)
    escalation_contacts: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    email: str | None = None


class Group(GroupBase, table=True):
    name: str = Field(primary_key=True, max_length=64)
    active: bool = Field(default=True, sa_column_kwargs={"server_default": ACTIVE_DEFAULT})


class GroupCreate(GroupBase):
    name: Name = Field(max_length=64)
    lead: OptionalName = Field(default=None, max_length=64)
    manager: OptionalName = Field(default=None, max_length=64)
    escalation_contacts: Names = []
    email: OptionalEmail = Field(default=None, max_length=254)
    active: bool = True


class GroupUpdate(SQLModel):
    lead: OptionalName = Field(default=None, max_length=64)
    manager: OptionalName = Field(default=None, max_length=64)
    escalation_contacts: Names | None = None
    email: OptionalEmail = None


class GroupPublic(GroupBase):
    name: str
    active: bool


# ------------------------------------------------------------------------------------ engineers


class EngineerBase(SQLModel):
    name: str
    email: str | None = None
    phone: str | None = Field(default=None, max_length=40)
    language: str | None = None
    time_zone: str | None = Field(default=None, max_length=64)
    skills: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    capacity: int = Field(default=5, ge=0)
    on_duty: bool = True


class Engineer(EngineerBase, table=True):
    username: str = Field(primary_key=True, max_length=64)
    # The primary group (the first of `groups`): dispatch, notifications and problem ownership
    # read it; `groups` holds every membership, the primary one first.
    group_name: str = Field(foreign_key="group.name", index=True)
    groups: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    active: bool = Field(default=True, sa_column_kwargs={"server_default": ACTIVE_DEFAULT})

    def memberships(self) -> list[str]:
        """Every group the engineer works in, the primary one first (rows written before
        memberships existed have only `group_name`)."""
        return list(dict.fromkeys([self.group_name, *(self.groups or [])]))


class EngineerCreate(EngineerBase):
    username: Name = Field(max_length=64)
    name: Text = Field(min_length=1, max_length=200)
    # The first group is the primary one.
    groups: Names = Field(min_length=1)
    email: OptionalEmail = Field(default=None, max_length=254)
    phone: Text | None = Field(default=None, max_length=40)
    language: OptionalLanguage = None
    time_zone: OptionalTimeZone = None
    skills: Names = []
    active: bool = True

    @field_validator("phone", mode="before")
    @classmethod
    def _phone(cls, value: Any) -> Any:
        return _blank_to_none(value)


class EngineerUpdate(SQLModel):
    name: Text | None = Field(default=None, min_length=1, max_length=200)
    email: OptionalEmail = Field(default=None, max_length=254)
    phone: Text | None = Field(default=None, max_length=40)
    language: OptionalLanguage = None
    time_zone: OptionalTimeZone = None
    skills: Names | None = None
    capacity: int | None = Field(default=None, ge=0)
    on_duty: bool | None = None
    groups: Names | None = Field(default=None, min_length=1)


class EngineerPublic(EngineerBase):
    username: str
    group_name: str
    groups: list[str]
    active: bool


# --------------------------------------------------------------------------- configuration items


class ConfigurationItemBase(SQLModel):
    kind: str = "server"
    criticality: str = "medium"
    owner_group: str | None = None
    environment: str | None = Field(default=None, max_length=64)
    # Who hears of a proactive notice about this CI (proactive.yaml), in their language; the
    # time zone a proposed change window is told in (empty: change.yaml's).
    customer_contact: str | None = Field(default=None, max_length=254)
    customer_language: str | None = Field(default=None, max_length=16)
    time_zone: str | None = Field(default=None, max_length=64)
    depends_on: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class ConfigurationItem(ConfigurationItemBase, table=True):
    name: str = Field(primary_key=True, max_length=200)
    active: bool = Field(default=True, sa_column_kwargs={"server_default": ACTIVE_DEFAULT})


class ConfigurationItemCreate(ConfigurationItemBase):
    name: Name = Field(max_length=200)
    kind: Name = Field(default="server", max_length=64)
    criticality: Criticality = "medium"
    owner_group: OptionalName = Field(default=None, max_length=64)
    environment: OptionalName = Field(default=None, max_length=64)
    customer_contact: OptionalEmail = Field(default=None, max_length=254)
    customer_language: OptionalLanguage = None
    time_zone: OptionalTimeZone = None
    depends_on: Names = []
    attributes: dict[str, Any] = {}
    active: bool = True


class ConfigurationItemUpdate(SQLModel):
    kind: Name | None = Field(default=None, max_length=64)
    criticality: Criticality | None = None
    owner_group: OptionalName = None
    environment: OptionalName = None
    customer_contact: OptionalEmail = Field(default=None, max_length=254)
    customer_language: OptionalLanguage = None
    time_zone: OptionalTimeZone = None
    depends_on: Names | None = None
    attributes: dict[str, Any] | None = None


class ConfigurationItemPublic(ConfigurationItemBase):
    name: str
    active: bool


# ------------------------------------------------------------------------------------ queries


def list_engineers(
    *, session: Session, group: str | None = None, active: bool | None = True
) -> list[Engineer]:
    """Engineers (active ones unless `active` says otherwise); with `group`, its members, the
    secondary memberships included."""
    statement = select(Engineer).order_by(Engineer.username)
    if active is not None:
        statement = statement.where(Engineer.active == active)
    rows = list(session.exec(statement))
    if group:
        # Memberships are a JSON list: filtered here, the same on SQLite and PostgreSQL (a team
        # is hundreds of rows, not millions).
        rows = [row for row in rows if group in row.memberships()]
    return rows


def get_engineer(*, session: Session, username: str | None) -> Engineer | None:
    return session.get(Engineer, username) if username else None


def get_group(*, session: Session, name: str | None) -> Group | None:
    return session.get(Group, name) if name else None
