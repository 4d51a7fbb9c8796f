"""Plan an incident's messages: who gets what, rendered in the incident's language."""

from __future__ import annotations

from typing import Any

from prefect import task
from sqlmodel import Session

from itilflow.models import Subject, notified_keys, session_scope
from itilflow.notifications.incident_audience import audience_emails
from itilflow.notifications.incident_context import resolution_note
from itilflow.notifications.incident_plan import incident_plan
from itilflow.notifications.plans import (
    NotificationPlan,
    NotificationRequest,
    channels_left,
)
from itilflow.policies import route_notification
from itilflow.runtime import runtime
from itilflow.services import incidents


@task(name="plan-notifications", retries=2, retry_delay_seconds=1)
def plan_notifications(requests: list[NotificationRequest]) -> list[NotificationPlan]:
    """Who gets what, for every request; messages with nobody to reach are left out, and so
    are those an earlier run already delivered on every channel."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        subjects = {Subject("incident", r["incident_id"]) for r in requests}
        delivered = notified_keys(session=session, subjects=subjects)
        plans = [_plan(session, rt, wanted) for wanted in requests]
    return [plan for plan in plans if channels_left(plan, delivered)]


def _plan(session: Session, rt: Any, wanted: NotificationRequest) -> NotificationPlan:
    incident_id, template, extra = wanted["incident_id"], wanted["template"], wanted["extra"]
    audience = wanted["audience"]
    incident = incidents.load_incident(session, incident_id)
    route = route_notification(rt.policies.routing, incident.priority or "P4", incident.group_name)
    emails = sorted(
        {
            address
            for who in audience
            if who != "on_call"
            for address in audience_emails(session, incident, who)
        }
    )
    if "assignee" in audience and not route.email_assignee:
        emails = sorted(set(emails) - set(audience_emails(session, incident, "assignee")))
    tags = list(route.tags) if "on_call" in audience else []
    if template == "incident_resolved":
        extra = {
            "resolution": resolution_note(session, incident_id),
            "known_error": None,
            **extra,
        }
    return incident_plan(
        session,
        incident,
        template=template,
        key=wanted["key"],
        actor=wanted["actor"],
        emails=emails,
        tags=tags,
        extra=extra,
        policies=rt.policies,
        public_url=rt.settings.public_url or "",
        mail_from=rt.mail.mail_from,
    )
