"""The facts a notification template is given about an incident."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session

from itilflow import clock
from itilflow.models import Incident, get_engineer, get_timeline, incident_number
from itilflow.policies import Policies, compute_sla
from itilflow.services import incidents


def incident_url(public_url: str, incident_id: int) -> str:
    """The incident's page in the console (gateway/console/incidents.py); tools keep the JSON
    under /api/incidents/<id>."""
    return f"{public_url}/incidents/{incident_number(incident_id)}"


def _when(value: datetime | None, zone: ZoneInfo) -> str | None:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if value else None


def when(value: datetime | None, policies: Policies, priority: str | None) -> str | None:
    """A time as people read it: in the time zone of the priority's SLA calendar."""
    zone = policies.sla.calendar_for(priority).zone if priority else ZoneInfo("UTC")
    return _when(value, zone)


def resolution_note(session: Session, incident_id: int) -> str | None:
    notes = [
        entry.message
        for entry in get_timeline(session=session, incident_id=incident_id)
        if entry.kind == "resolved"
    ]
    return notes[-1] if notes else None


def incident_context(
    session: Session, incident: Incident, *, policies: Policies, public_url: str
) -> dict[str, Any]:
    assert incident.id is not None
    figures = (
        compute_sla(
            incidents.status_events(session, incident.id),
            policies.sla,
            incident.priority,
            clock.now(),
        )
        if incident.priority
        else None
    )
    # Deadlines read in the time zone of the calendar the incident's SLA runs on.
    zone = (
        policies.sla.calendar_for(incident.priority).zone if incident.priority else ZoneInfo("UTC")
    )
    assignee = get_engineer(session=session, username=incident.assignee)
    return {
        "number": incident.number,
        "title": incident.title,
        "description": incident.description,
        "priority": incident.priority,
        "status": incident.status.value,
        "category": incident.category,
        "ci": incident.ci_name,
        "assignee": assignee.name if assignee else incident.assignee,
        "group": incident.group_name,
        "url": incident_url(public_url, incident.id),
        "opened_at": _when(incident.opened_at, zone),
        "response_due": _when(figures.response_due, zone) if figures else None,
        "resolution_due": _when(figures.resolution_due, zone) if figures else None,
    }
