"""Edits of an open incident by the people working it: reassign to a person of the directory,
change its priority (comments, internal or to the reporter, are incident_actions.comment's).
Like services/incident_actions.py: checked first, a timeline entry, the SLA triggers brought in
line, all in the caller's transaction."""

from __future__ import annotations

from sqlmodel import Session

from itilflow import clock
from itilflow.models import OPEN_STATUSES, Engineer, Incident, IncidentStatus, add_timeline
from itilflow.policies import Policies
from itilflow.services.incident_actions import ActionError
from itilflow.services.sla_timers import sync_triggers

PRIORITIES = ("P1", "P2", "P3", "P4")


def _must_be_open(incident: Incident, what: str) -> None:
    if incident.status not in OPEN_STATUSES:
        raise ActionError(f"{incident.number} is {incident.status.value}: {what} needs it open")


def _record_edit(
    session: Session,
    incident: Incident,
    *,
    kind: str,
    actor: str,
    message: str,
    data: dict[str, object],
    policies: Policies,
) -> Incident:
    """The edited incident stored, its timeline entry, and its SLA triggers brought in line."""
    incident.updated_at = clock.now()
    session.add(incident)
    assert incident.id is not None
    add_timeline(
        session=session,
        incident_id=incident.id,
        kind=kind,
        actor=actor,
        message=message,
        data=data,
    )
    session.flush()
    sync_triggers(session=session, incident=incident, policies=policies)
    return incident


def reassign(
    session: Session,
    incident: Incident,
    *,
    assignee: str,
    actor: str,
    note: str,
    policies: Policies,
) -> Incident:
    """Give the incident to `assignee` (an active person of the directory). Its group becomes
    the assignee's primary one unless the assignee works in the incident's group already."""
    _must_be_open(incident, "reassigning")
    engineer = session.get(Engineer, assignee)
    if engineer is None or not engineer.active:
        raise ActionError(f"there is no active person {assignee!r} in the directory")
    if engineer.username == incident.assignee:
        raise ActionError(f"{incident.number} is assigned to {assignee} already")
    before = {"assignee": incident.assignee, "group": incident.group_name}
    incident.assignee = engineer.username
    if incident.group_name not in engineer.memberships():
        incident.group_name = engineer.group_name
    if incident.status == IncidentStatus.new:
        incident.status = IncidentStatus.assigned
    after = {"assignee": incident.assignee, "group": incident.group_name}
    return _record_edit(
        session,
        incident,
        kind="reassigned",
        actor=actor,
        message=note or f"reassigned to {engineer.username}",
        data={"from": before, "to": after},
        policies=policies,
    )


def change_priority(
    session: Session,
    incident: Incident,
    *,
    priority: str,
    actor: str,
    note: str,
    policies: Policies,
) -> Incident:
    """Set the priority (P1..P4); the SLA clocks follow the new priority's targets."""
    _must_be_open(incident, "changing the priority")
    if priority not in PRIORITIES:
        raise ActionError(f"unknown priority {priority!r}: expected one of {', '.join(PRIORITIES)}")
    if priority == incident.priority:
        raise ActionError(f"{incident.number} is {priority} already")
    if not note.strip():
        raise ActionError("changing the priority needs a note saying why")
    data = {"from": incident.priority, "to": priority}
    incident.priority = priority
    return _record_edit(
        session,
        incident,
        kind="priority_changed",
        actor=actor,
        message=note,
        data=data,
        policies=policies,
    )


def is_public(kind: str, data: dict[str, object]) -> bool:
    """True for a timeline entry whose text the reporter may read."""
    return kind == "commented" and data.get("visibility") == "public"
