"""The actions on an open incident: acknowledge, hold, resume, resolve, reopen, close, comment.

Each checks the transition, appends to the timeline and brings the incident's SLA triggers in
line, all in the caller's transaction: the caller commits or nothing happened. `ACTIONS` names
them for `incidents.apply_action`.
"""

from __future__ import annotations

from sqlmodel import Session

from itilflow import clock
from itilflow.models import OPEN_STATUSES, Incident, IncidentStatus, add_timeline, add_trigger
from itilflow.policies import Policies
from itilflow.services.sla_timers import status_events, sync_triggers


class ActionError(ValueError):
    """An action that the incident's state does not allow; nothing was changed."""


def _change_status(
    session: Session,
    incident: Incident,
    *,
    to: IncidentStatus,
    kind: str,
    actor: str,
    note: str,
    allowed_from: tuple[IncidentStatus, ...],
    policies: Policies,
) -> Incident:
    if incident.status not in allowed_from:
        allowed = ", ".join(status.value for status in allowed_from)
        raise ActionError(
            f"{incident.number} is {incident.status.value}: '{kind}' needs one of {allowed}"
        )
    now = clock.now()
    incident.status = to
    incident.updated_at = now
    session.add(incident)
    assert incident.id is not None
    add_timeline(session=session, incident_id=incident.id, kind=kind, actor=actor, message=note)
    session.flush()
    sync_triggers(session=session, incident=incident, policies=policies)
    return incident


def acknowledge(
    session: Session, incident: Incident, *, actor: str, note: str, policies: Policies
) -> Incident:
    return _change_status(
        session,
        incident,
        to=IncidentStatus.acknowledged,
        kind="acknowledged",
        actor=actor,
        note=note or "acknowledged",
        allowed_from=(IncidentStatus.new, IncidentStatus.assigned),
        policies=policies,
    )


def hold(
    session: Session, incident: Incident, *, actor: str, note: str, policies: Policies
) -> Incident:
    if not note.strip():
        raise ActionError("putting an incident on hold needs a note saying what it waits for")
    return _change_status(
        session,
        incident,
        to=IncidentStatus.on_hold,
        kind="on_hold",
        actor=actor,
        note=note,
        allowed_from=(IncidentStatus.new, IncidentStatus.assigned, IncidentStatus.acknowledged),
        policies=policies,
    )


def resume(
    session: Session, incident: Incident, *, actor: str, note: str, policies: Policies
) -> Incident:
    responded = any(e.kind == "acknowledged" for e in status_events(session, incident.id or 0))
    return _change_status(
        session,
        incident,
        to=IncidentStatus.acknowledged if responded else IncidentStatus.assigned,
        kind="resumed",
        actor=actor,
        note=note or "resumed",
        allowed_from=(IncidentStatus.on_hold,),
        policies=policies,
    )


def resolve(
    session: Session, incident: Incident, *, actor: str, note: str, policies: Policies
) -> Incident:
    if not note.strip():
        raise ActionError("resolving an incident needs a resolution note")
    _change_status(
        session,
        incident,
        to=IncidentStatus.resolved,
        kind="resolved",
        actor=actor,
        note=note,
        allowed_from=OPEN_STATUSES,
        policies=policies,
    )
    incident.resolved_at = clock.now()
    assert incident.id is not None
    resolutions = sum(1 for e in status_events(session, incident.id) if e.kind == "resolved")
    # One survey per resolution: a reopened and re-resolved incident asks again.
    add_trigger(
        session=session,
        incident_id=incident.id,
        kind="resolved",
        key=f"resolved:{resolutions}",
        due_at=clock.now(),
        priority=incident.priority,
    )
    return incident


def reopen(
    session: Session, incident: Incident, *, actor: str, note: str, policies: Policies
) -> Incident:
    if not note.strip():
        raise ActionError("reopening an incident needs a note saying why")
    responded = any(e.kind == "acknowledged" for e in status_events(session, incident.id or 0))
    incident.resolved_at = None
    return _change_status(
        session,
        incident,
        to=IncidentStatus.acknowledged if responded else IncidentStatus.assigned,
        kind="reopened",
        actor=actor,
        note=note,
        allowed_from=(IncidentStatus.resolved,),
        policies=policies,
    )


def close(
    session: Session, incident: Incident, *, actor: str, note: str, policies: Policies
) -> Incident:
    _change_status(
        session,
        incident,
        to=IncidentStatus.closed,
        kind="closed",
        actor=actor,
        note=note or "closed",
        allowed_from=(IncidentStatus.resolved,),
        policies=policies,
    )
    incident.closed_at = clock.now()
    return incident


def comment(
    session: Session,
    incident: Incident,
    *,
    actor: str,
    note: str,
    policies: Policies,
    visibility: str | None = None,
) -> Incident:
    """A comment. `visibility` "public": the reporter reads it too (the console's comments to
    the reporter and the reporter's replies); "internal" or None: the people working it."""
    if not note.strip():
        raise ActionError("a comment needs text")
    if incident.status == IncidentStatus.closed:
        raise ActionError(f"{incident.number} is closed: reopen is not possible, open a new one")
    assert incident.id is not None
    add_timeline(
        session=session,
        incident_id=incident.id,
        kind="commented",
        actor=actor,
        message=note,
        data={"visibility": visibility} if visibility else None,
    )
    incident.updated_at = clock.now()
    session.add(incident)
    return incident


ACTIONS = {
    "acknowledge": acknowledge,
    "comment": comment,
    "hold": hold,
    "resume": resume,
    "resolve": resolve,
    "reopen": reopen,
    "close": close,
}
