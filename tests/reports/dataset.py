"""A small incident history with known answers, written straight into the tables.

Months are Asia/Shanghai (report.yaml's default time zone); the report is made at NOW.
Each incident's expected figures are worked out next to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from itilflow.models import Incident, IncidentStatus, TimelineEntry, session_scope

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
M = timedelta(minutes=1)
H = timedelta(hours=1)


@dataclass
class Event:
    kind: str
    after: timedelta
    data: dict[str, Any] = field(default_factory=dict)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def make_incident(
    engine: Engine,
    *,
    opened: datetime,
    priority: str | None,
    events: Sequence[Event] = (),
    category: str | None = None,
    ci: str | None = None,
    assignee: str | None = None,
    score: int | None = None,
    title: str = "incident",
) -> int:
    """One incident with an `opened` entry at `opened` and `events` after it."""
    status = IncidentStatus.new
    resolved_at = closed_at = None
    for event in events:
        if event.kind == "assigned":
            status = IncidentStatus.assigned
        elif event.kind in ("acknowledged", "resumed", "reopened"):
            status = IncidentStatus.acknowledged
            resolved_at = None if event.kind == "reopened" else resolved_at
        elif event.kind == "on_hold":
            status = IncidentStatus.on_hold
        elif event.kind == "resolved":
            status, resolved_at = IncidentStatus.resolved, opened + event.after
        elif event.kind == "closed":
            status, closed_at = IncidentStatus.closed, opened + event.after
    with session_scope(engine) as session:
        incident = Incident(
            title=title,
            priority=priority,
            category=category,
            ci_name=ci,
            assignee=assignee,
            survey_score=score,
            status=status,
            opened_at=opened,
            resolved_at=resolved_at,
            closed_at=closed_at,
        )
        session.add(incident)
        session.flush()
        assert incident.id is not None
        session.add(TimelineEntry(incident_id=incident.id, at=opened, actor="test", kind="opened"))
        for event in events:
            session.add(
                TimelineEntry(
                    incident_id=incident.id,
                    at=opened + event.after,
                    actor="test",
                    kind=event.kind,
                    data=event.data,
                )
            )
        return incident.id


def assigned(engineer: str, after: timedelta = timedelta()) -> Event:
    return Event("assigned", after, {"group": "g", "engineer": engineer})


def escalated(notify: str, after: timedelta, step: int = 0) -> Event:
    return Event("escalated", after, {"step": step, "repeat": 0, "notify": notify})


def load_history(engine: Engine) -> dict[str, int]:
    """The known-answer history. October 2026 (Shanghai) holds A-F; see the tests for sums."""
    ids = {}
    # A: P1 on db1, acknowledged in 10m, resolved in 2h: both targets met; first contact.
    ids["A"] = make_incident(
        engine,
        opened=utc(2026, 10, 5, 1),
        priority="P1",
        category="database",
        ci="db1",
        assignee="chen",
        score=5,
        events=[assigned("chen"), Event("acknowledged", 10 * M), Event("resolved", 2 * H)],
    )
    # B: P1 on db1 overlapping A; acknowledged after 40m (> 30m) and resolved after 5h (> 4h);
    # the chain paged on-call and then the group lead: escalated, not first contact.
    ids["B"] = make_incident(
        engine,
        opened=utc(2026, 10, 5, 2),
        priority="P1",
        category="database",
        ci="db1",
        assignee="chen",
        score=2,
        events=[
            assigned("chen"),
            escalated("on_call", timedelta()),
            escalated("group_lead", 15 * M, step=2),
            Event("acknowledged", 40 * M),
            Event("resolved", 5 * H),
        ],
    )
    # C: P2 on sw1 (office hours, Asia/Shanghai), Monday 09:30 local. Acknowledged 09:45;
    # on hold 10:00-14:00; resolved 16:00 (2.5 business hours); reopened Tuesday 09:00 and
    # resolved 11:00 (2 more): 4.5h of 8h, met. Reopened: not first contact.
    ids["C"] = make_incident(
        engine,
        opened=utc(2026, 10, 12, 1, 30),
        priority="P2",
        category="network",
        ci="sw1",
        assignee="liu",
        events=[
            assigned("liu"),
            Event("acknowledged", 15 * M),
            Event("on_hold", 30 * M),
            Event("resumed", 4 * H + 30 * M),
            Event("resolved", 6 * H + 30 * M),
            Event("reopened", 23 * H + 30 * M),
            Event("resolved", 25 * H + 30 * M),
        ],
    )
    # D: P3 on app1, Tuesday 11:00 local, never acknowledged: both targets breached by NOW.
    ids["D"] = make_incident(
        engine,
        opened=utc(2026, 10, 20, 3),
        priority="P3",
        category="software",
        ci="app1",
        assignee="chen",
        events=[assigned("chen")],
    )
    # E: not classified yet: counted as opened, left out of the SLA.
    ids["E"] = make_incident(engine, opened=utc(2026, 10, 25, 4), priority=None)
    # F: 2026-09-30 16:30 UTC is 10-01 00:30 in Shanghai: an October incident.
    ids["F"] = make_incident(
        engine,
        opened=utc(2026, 9, 30, 16, 30),
        priority="P1",
        category="hardware",
        ci="srv1",
        assignee="wang",
        score=4,
        events=[assigned("wang"), Event("acknowledged", 5 * M), Event("resolved", 1 * H)],
    )
    # G: 2026-10-31 23:30 UTC is 11-01 07:30 in Shanghai: a November incident.
    ids["G"] = make_incident(
        engine,
        opened=utc(2026, 10, 31, 23, 30),
        priority="P1",
        category="hardware",
        ci="srv1",
        assignee="wang",
        events=[assigned("wang"), Event("acknowledged", 1 * M), Event("resolved", 30 * M)],
    )
    # H: September, P2 on db1, Thursday 10:00 local, 30m to acknowledge, resolved at 13:00.
    ids["H"] = make_incident(
        engine,
        opened=utc(2026, 9, 10, 2),
        priority="P2",
        category="database",
        ci="db1",
        assignee="chen",
        score=3,
        events=[assigned("chen"), Event("acknowledged", 30 * M), Event("resolved", 3 * H)],
    )
    # I: August, P1 on db1, handed from chen to liu (two assignments): not first contact.
    ids["I"] = make_incident(
        engine,
        opened=utc(2026, 8, 15),
        priority="P1",
        category="database",
        ci="db1",
        assignee="liu",
        score=5,
        events=[
            assigned("chen"),
            assigned("liu", 5 * M),
            Event("acknowledged", 20 * M),
            Event("resolved", 3 * H),
            Event("closed", 30 * H),
        ],
    )
    return ids
