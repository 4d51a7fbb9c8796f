"""What the incident page shows, read from the records: the facts, the SLA clocks, the timeline,
a matched known error, and which actions the person may take now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from itilflow import clock
from itilflow.models import (
    OPEN_STATUSES,
    Engineer,
    Incident,
    IncidentStatus,
    TimelineEntry,
    get_engineer,
    get_timeline,
)
from itilflow.notifications.incident_context import when
from itilflow.policies import CLOCK_KINDS, Policies, StatusEvent, compute_sla
from itilflow.services import incidents
from itilflow.services.incident_edits import is_public
from itilflow.services.principals import Principal

S = IncidentStatus
# Each action the page offers: the role it needs and the statuses it applies to.
ACTION_RULES: dict[str, tuple[str, tuple[IncidentStatus, ...]]] = {
    "acknowledge": ("agent", (S.new, S.assigned)),
    "comment": ("agent", (*OPEN_STATUSES, S.resolved)),
    "reassign": ("group_lead", OPEN_STATUSES),
    "priority": ("group_lead", OPEN_STATUSES),
    "hold": ("agent", (S.new, S.assigned, S.acknowledged)),
    "resume": ("agent", (S.on_hold,)),
    "resolve": ("agent", OPEN_STATUSES),
    "reopen": ("agent", (S.resolved,)),
    "close": ("group_lead", (S.resolved,)),
}
# The reporter's own action on their incident.
REPLY = "reply"
REPLY_STATUSES = (*OPEN_STATUSES, S.resolved)


def may_work(person: Principal) -> bool:
    """Agents (and the roles above them) see every incident and its whole timeline."""
    return person.has("agent")


def is_reporter(session: Session, person: Principal, incident: Incident) -> bool:
    """True when `person`'s address in the directory is the incident's reporter's."""
    if not incident.reporter_email or person.kind != "person":
        return False
    engineer = session.get(Engineer, person.name)
    return bool(engineer and engineer.email) and (
        engineer.email.strip().lower() == incident.reporter_email.strip().lower()
    )


def actions_for(person: Principal, incident: Incident) -> list[str]:
    """The actions `person` may take on `incident` as it stands."""
    return [
        action
        for action, (role, statuses) in ACTION_RULES.items()
        if person.has(role) and incident.status in statuses
    ]


def _remaining(due: datetime | None, now: datetime) -> str | None:
    if due is None:
        return None
    left = due - now
    sign = "-" if left < timedelta(0) else ""
    minutes = int(abs(left).total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    text = f"{days}d {hours}h" if days else f"{hours}h {minutes:02d}m"
    return sign + text


def sla_clocks(
    entries: list[TimelineEntry], incident: Incident, policies: Policies
) -> dict[str, Any]:
    """The response and resolution clocks as people read them, from the incident's timeline."""
    priority = incident.priority or incidents.classify(incident, policies)
    now = clock.now()
    events = [StatusEvent(at=e.at, kind=e.kind) for e in entries if e.kind in CLOCK_KINDS]
    figures = compute_sla(events, policies.sla, priority, now)
    running = incident.status in OPEN_STATUSES
    return {
        "response_due": when(figures.response_due, policies, priority),
        "response_done": figures.responded_at is not None,
        "response_remaining": None
        if figures.responded_at
        else _remaining(figures.response_due, now),
        "response_breached": figures.response_breached,
        "resolution_due": when(figures.resolution_due, policies, priority),
        "resolution_remaining": _remaining(figures.resolution_due, now) if running else None,
        "resolution_breached": figures.resolution_breached,
        "paused": figures.paused,
        "resolved": figures.resolved_at is not None,
    }


def timeline(
    entries: list[TimelineEntry], incident: Incident, policies: Policies, *, reporter: bool
) -> list[dict[str, Any]]:
    """The timeline, oldest first. The reporter sees the status changes and public comments;
    internal notes stay with the people working the incident."""
    shown = []
    for entry in entries:
        public = is_public(entry.kind, entry.data)
        if reporter and entry.kind == "commented" and not public:
            continue
        if reporter and entry.kind not in STATUS_KINDS and entry.kind != "commented":
            continue
        shown.append(
            {
                "at": when(entry.at, policies, incident.priority),
                "actor": entry.actor,
                "kind": entry.kind,
                "message": "" if reporter and not public else entry.message,
                "public": public,
            }
        )
    return shown


STATUS_KINDS = {"opened", "acknowledged", "on_hold", "resumed", "resolved", "reopened", "closed"}


def known_error(entries: list[TimelineEntry]) -> dict[str, Any] | None:
    """The known error the incident was matched to (services/problems/knowledge.py), if any."""
    for entry in entries:
        if entry.kind == "known_error_matched":
            return dict(entry.data.get("known_error") or {}) or None
    return None


@dataclass(frozen=True)
class IncidentView:
    incident: Incident
    assignee: str | None
    opened_at: str | None
    sla: dict[str, Any]
    timeline: list[dict[str, Any]]
    known_error: dict[str, Any] | None
    for_reporter: bool


def view_of(
    session: Session, incident: Incident, policies: Policies, *, reporter: bool
) -> IncidentView:
    assert incident.id is not None
    assignee = get_engineer(session=session, username=incident.assignee)
    entries = get_timeline(session=session, incident_id=incident.id)  # read once for all
    return IncidentView(
        incident=incident,
        assignee=assignee.name if assignee else incident.assignee,
        opened_at=when(incident.opened_at, policies, incident.priority),
        sla=sla_clocks(entries, incident, policies),
        timeline=timeline(entries, incident, policies, reporter=reporter),
        known_error=None if reporter else known_error(entries),
        for_reporter=reporter,
    )
