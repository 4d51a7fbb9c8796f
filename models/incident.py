"""Incidents and their append-only timeline."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy import JSON, Column, Table, UniqueConstraint, bindparam, insert
from sqlalchemy import select as core_select
from sqlmodel import Field, Session, SQLModel, col, select

from itilflow import clock
from itilflow.models.db import UTCDateTime
from itilflow.models.timeline import TimelineFields, append_only


class IncidentStatus(StrEnum):
    new = "new"
    assigned = "assigned"
    acknowledged = "acknowledged"
    on_hold = "on_hold"
    resolved = "resolved"
    closed = "closed"


# What can be done to an incident, from the API and the Prefect UI's update-incident form.
IncidentAction = Literal["acknowledge", "comment", "hold", "resume", "resolve", "reopen", "close"]

OPEN_STATUSES = (
    IncidentStatus.new,
    IncidentStatus.assigned,
    IncidentStatus.acknowledged,
    IncidentStatus.on_hold,
)


class IncidentBase(SQLModel):
    """What an incident is opened with, by any source: the API, the report-incident form, an
    alert, an inspection, a follow-up. Storage's names (the API calls `ci_name` "ci")."""

    title: str = Field(max_length=300)
    description: str = Field(default="", max_length=20_000)
    category: str | None = Field(default=None, max_length=64)
    ci_name: str | None = Field(default=None, max_length=200)
    impact: str | None = Field(default=None, max_length=32)
    urgency: str | None = Field(default=None, max_length=32)
    reporter_name: str | None = Field(default=None, max_length=200)
    reporter_email: str | None = Field(default=None, max_length=320)
    source: str = Field(default="api", max_length=32)


class IncidentCreate(IncidentBase):
    """A new incident, as services.incidents.open_incident(s) stores it. The API's body
    (gateway/incidents.py) is this with the API's names and checks."""

    # None: derived from impact x urgency when the incident is opened. Any other value than
    # P1..P4 is refused by services.incidents.validate_new_incident, with that message.
    priority: str | None = None
    fingerprint: str | None = None
    labels: dict[str, Any] = Field(default_factory=dict)
    parent_id: int | None = None

    def row(self) -> dict[str, Any]:
        """The incident table's columns for this new incident (for the bulk INSERT)."""
        # The fields' values as they are (model_dump() copies them one by one, ~50x slower:
        # the alert intake builds one row per alert).
        return dict(self.__dict__)


class Incident(IncidentBase, table=True):
    __table_args__ = (UniqueConstraint("dedup_key"),)

    id: int | None = Field(default=None, primary_key=True)
    priority: str | None = Field(default=None, max_length=2, index=True)
    status: IncidentStatus = Field(default=IncidentStatus.new, index=True)
    group_name: str | None = Field(default=None, index=True)
    assignee: str | None = Field(default=None, index=True)
    language: str | None = None
    # Alerts dedupe on fingerprint + occurrence; API clients may send an Idempotency-Key.
    dedup_key: str | None = Field(default=None, max_length=300)
    fingerprint: str | None = Field(default=None, index=True)
    labels: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # The escalation chain as it was when the incident was opened (a later edit changes nothing).
    escalation: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    parent_id: int | None = Field(default=None, foreign_key="incident.id")
    survey_score: int | None = None
    survey_comment: str | None = None
    opened_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime, index=True)
    updated_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    @property
    def number(self) -> str:
        return incident_number(self.id)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


def incident_number(incident_id: int | None) -> str:
    return f"INC-{incident_id:06d}" if incident_id is not None else "INC-?"


def parse_incident_ref(ref: str | int) -> int:
    """Accept 42, '42' or 'INC-000042'."""
    text = str(ref).strip().upper().removeprefix("INC-")
    # ASCII digits only, and few enough to be a row id (SQLite's integers are 64-bit).
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ValueError(f"not an incident number: {ref!r} (expected e.g. INC-000042 or 42)")
    return int(text)


class IncidentPublic(SQLModel):
    """An incident as the API shows it (`GET /api/incidents/...`), in the API's names."""

    id: int
    number: str
    url: str
    title: str
    description: str
    status: str
    priority: str | None
    category: str | None
    ci: str | None
    impact: str | None
    urgency: str | None
    group: str | None
    assignee: str | None
    source: str
    reporter_email: str | None
    fingerprint: str | None
    parent_id: int | None
    survey_score: int | None
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None

    @classmethod
    def of(cls, incident: Incident, *, url: str) -> IncidentPublic:
        assert incident.id is not None
        return cls.model_validate(
            {
                **incident.model_dump(exclude={"labels", "escalation", "dedup_key"}),
                "number": incident.number,
                "url": url,
                "status": incident.status.value,
                "ci": incident.ci_name,
                "group": incident.group_name,
            }
        )


class TimelineEntry(TimelineFields, table=True):
    """Who did what and when. Rows are only ever added."""

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)


append_only(TimelineEntry, "incident")


def add_timeline(
    *,
    session: Session,
    incident_id: int,
    kind: str,
    actor: str,
    message: str = "",
    data: dict[str, Any] | None = None,
) -> TimelineEntry:
    entry = TimelineEntry(
        incident_id=incident_id, kind=kind, actor=actor, message=message, data=data or {}
    )
    session.add(entry)
    return entry


def get_timeline(*, session: Session, incident_id: int) -> list[TimelineEntry]:
    statement = (
        select(TimelineEntry)
        .where(TimelineEntry.incident_id == incident_id)
        .order_by(col(TimelineEntry.at), col(TimelineEntry.id))
    )
    return list(session.exec(statement))


def get_latest_entry(*, session: Session, incident_id: int, kind: str) -> TimelineEntry | None:
    """The incident's newest entry of `kind` (one just added in this transaction included)."""
    return session.exec(
        select(TimelineEntry)
        .where(TimelineEntry.incident_id == incident_id, TimelineEntry.kind == kind)
        .order_by(col(TimelineEntry.id).desc())
    ).first()


def get_incident(*, session: Session, incident_id: int) -> Incident | None:
    return session.get(Incident, incident_id)


def get_incident_by_dedup_key(*, session: Session, dedup_key: str) -> Incident | None:
    return session.exec(select(Incident).where(Incident.dedup_key == dedup_key)).first()


# Bound parameters per statement stay well below SQLite's oldest limit (999) and PostgreSQL's.
_KEYS_PER_STATEMENT = 500


def _incident_table() -> Table:
    return Incident.__table__  # type: ignore[attr-defined,no-any-return]


# Built once: constructing and coercing them per call cost more than running them.
_IDS_BY_DEDUP_KEY = core_select(_incident_table().c.dedup_key, _incident_table().c.id).where(
    _incident_table().c.dedup_key.in_(bindparam("keys", expanding=True))
)
_INSERT_INCIDENT_RETURNING_ID = insert(_incident_table()).returning(_incident_table().c.id)
_INSERT_INCIDENTS_RETURNING_KEYS = insert(_incident_table()).returning(
    _incident_table().c.dedup_key, _incident_table().c.id
)
_INSERT_TIMELINE = insert(TimelineEntry.__table__)  # type: ignore[attr-defined]


def incident_ids_by_dedup_key(*, session: Session, dedup_keys: Collection[str]) -> dict[str, int]:
    """The stored incidents among `dedup_keys` (key -> id): one SELECT ... IN for up to 500
    keys, instead of one query per key."""
    keys = sorted(set(dedup_keys))
    found: dict[str, int] = {}
    connection = session.connection()
    for start in range(0, len(keys), _KEYS_PER_STATEMENT):
        rows = connection.execute(
            _IDS_BY_DEDUP_KEY, {"keys": keys[start : start + _KEYS_PER_STATEMENT]}
        )
        found.update(dict(rows.all()))
    return found


def insert_incident_rows(*, session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert incident rows with SQLAlchemy Core, no ORM objects; returns their ids in the
    order of `rows`. Rows that all carry a dedup key go in one multi-row INSERT ... RETURNING
    and are matched back by their key: SQLAlchemy's ordered RETURNING falls back to one
    statement per row on SQLite. Each row must name the same columns."""
    if not rows:
        return []
    connection = session.connection()
    keys = [row.get("dedup_key") for row in rows]
    if len(rows) == 1 or None in keys or len(set(keys)) != len(keys):
        return [connection.execute(_INSERT_INCIDENT_RETURNING_ID, row).scalar_one() for row in rows]
    ids = dict(connection.execute(_INSERT_INCIDENTS_RETURNING_KEYS, list(rows)).all())
    return [ids[key] for key in keys]


def insert_timeline_rows(*, session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Append timeline rows with one Core INSERT (executemany), no ORM objects, and their
    Prefect events to the outbox with another (the ORM's rows get theirs after each flush)."""
    # Imported here: the outbox module reads this one's table and numbers.
    from itilflow.models.timeline_events import insert_outbox_rows

    if rows:
        session.connection().execute(_INSERT_TIMELINE, list(rows))
        insert_outbox_rows(session.connection(), "incident", "incident_id", rows)


def list_incidents(
    *, session: Session, status: str | None = None, limit: int = 100, offset: int = 0
) -> list[Incident]:
    statement = select(Incident).order_by(col(Incident.id).desc()).offset(offset).limit(limit)
    if status:
        statement = statement.where(Incident.status == status)
    return list(session.exec(statement))


def count_open_by_assignee(*, session: Session) -> dict[str, int]:
    from sqlalchemy import func

    rows = session.exec(
        select(Incident.assignee, func.count())
        .where(col(Incident.status).in_(OPEN_STATUSES), col(Incident.assignee).is_not(None))
        .group_by(Incident.assignee)
    )
    return {assignee: count for assignee, count in rows if assignee}
