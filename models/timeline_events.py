"""The outbox of Prefect events: every timeline row (of an incident, a change or a problem) is
also an event of the Prefect UI's feed, whose resource is its record
(`itilflow.incident.INC-000042`) and whose name is the entry's kind
(`itilflow.incident.escalated`).

The event is written here, in the transaction that writes the timeline row, and sent later by
the runner (itilflow.dispatch.events), which deletes the rows the server accepted. So an event
is not lost while the Prefect server is down or slow, and never slows what wrote the entry: an
intake's transaction pays one more INSERT, not a round trip to Prefect. Each row keeps its
event's id, so a row sent twice (a runner killed between the server's answer and the DELETE) is
the same event, which the server stores once.

Rows added through the ORM are found after each flush (one INSERT per flush); the gateway's bulk
path (insert_timeline_rows) calls `insert_outbox_rows` itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, event, insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Field, Session, SQLModel, col, delete, select

from itilflow import clock
from itilflow.models.change import ChangeEntry, change_number
from itilflow.models.db import UTCDateTime
from itilflow.models.incident import TimelineEntry, incident_number
from itilflow.models.proactive import ProactiveEntry, proactive_number
from itilflow.models.problem import ProblemEntry, problem_number

EVENT_PREFIX = "itilflow"


class TimelineEvent(SQLModel, table=True):
    """A timeline row's event, not sent yet."""

    __tablename__ = "timeline_event"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=36)
    occurred: datetime = Field(sa_type=UTCDateTime)
    event: str = Field(max_length=80)  # itilflow.incident.escalated
    resource: str = Field(max_length=40)  # itilflow.incident.INC-000042
    flow_run_id: str | None = Field(default=None, max_length=36)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


# Timeline row class -> (subject kind, its subject column, the subject's number).
_SUBJECTS: dict[type, tuple[str, str, Any]] = {
    TimelineEntry: ("incident", "incident_id", incident_number),
    ChangeEntry: ("change", "change_id", change_number),
    ProblemEntry: ("problem", "problem_id", problem_number),
    ProactiveEntry: ("proactive", "proactive_id", proactive_number),
}


def _current_flow_run_id() -> str | None:
    """The Prefect flow run writing the entry, from a flow or one of its tasks; None in the
    gateway and in the runner outside a run."""
    from prefect.runtime import flow_run  # the engine's context, read only when an entry is made

    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


def outbox_row(subject: str, subject_id: int, entry: dict[str, Any], run: str | None) -> dict:
    """The outbox row of one timeline entry (`entry`: its kind, actor, message, data, at)."""
    number = _SUBJECTS_BY_KIND[subject](subject_id)
    return {
        "event_id": str(uuid.uuid4()),
        "occurred": entry.get("at") or clock.now(),
        "event": f"{EVENT_PREFIX}.{subject}.{entry['kind']}",
        "resource": f"{EVENT_PREFIX}.{subject}.{number}",
        "flow_run_id": run,
        "payload": {
            "kind": entry["kind"],
            "actor": entry.get("actor", ""),
            "message": entry.get("message", ""),
            "data": entry.get("data") or {},
        },
    }


_SUBJECTS_BY_KIND = {kind: number for kind, _, number in _SUBJECTS.values()}
_INSERT_OUTBOX = insert(TimelineEvent.__table__)  # type: ignore[attr-defined]


def insert_outbox_rows(
    connection: Connection, subject: str, column: str, entries: Sequence[dict[str, Any]]
) -> None:
    """The events of timeline rows inserted without the ORM (`entries`: the rows' values)."""
    if entries:
        run = _current_flow_run_id()
        rows = [outbox_row(subject, entry[column], entry, run) for entry in entries]
        connection.execute(_INSERT_OUTBOX, rows)


def _entries_flushed(session: OrmSession, _context: Any) -> None:
    """After a flush, the new timeline rows' events, in the same transaction."""
    rows: list[dict[str, Any]] = []
    run: str | None = None
    for instance in session.new:
        described = _SUBJECTS.get(type(instance))
        if described is None:
            continue
        subject, column, _ = described
        if not rows:
            run = _current_flow_run_id()
        values = {name: getattr(instance, name) for name in ("at", "kind", "actor", "message")}
        values["data"] = instance.data
        rows.append(outbox_row(subject, getattr(instance, column), values, run))
    if rows:
        session.connection().execute(_INSERT_OUTBOX, rows)


event.listen(OrmSession, "after_flush", _entries_flushed)


def pending_events(*, session: Session, limit: int) -> list[TimelineEvent]:
    """The oldest events not sent yet."""
    return list(session.exec(select(TimelineEvent).order_by(col(TimelineEvent.id)).limit(limit)))


def forget_sent_events(*, session: Session, ids: Sequence[int]) -> None:
    """The server accepted these: they leave the outbox (the timeline keeps the record)."""
    session.execute(delete(TimelineEvent).where(col(TimelineEvent.id).in_(list(ids))))
