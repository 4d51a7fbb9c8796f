"""Plan an incident's messages: who gets what, rendered in the incident's language."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from sqlmodel import Session

from itilflow import clock
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
from itilflow.services.oncall_overrides import who_is_on_call


@task(name="plan-notifications", retries=2, retry_delay_seconds=1)
def plan_notifications(requests: list[NotificationRequest]) -> list[NotificationPlan]:
    """Who gets what, for every request; messages with nobody to reach are left out, and so
    are those an earlier run already delivered on every channel."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        subjects = {Subject("incident", r["incident_id"]) for r in requests}
        delivered = notified_keys(session=session, subjects=subjects)
        on_call = _OnCallAt(session, rt, clock.now())
        plans = [_plan(session, rt, wanted, on_call) for wanted in requests]
    return [plan for plan in plans if channels_left(plan, delivered)]


def _plan(
    session: Session, rt: Any, wanted: NotificationRequest, on_call_at: _OnCallAt
) -> NotificationPlan:
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
    on_call = on_call_at(incident.group_name) if "on_call" in audience else None
    if on_call and on_call.get("email"):
        emails = sorted({*emails, on_call["email"]})
    if on_call and "name" in on_call and extra.get("target") == "on_call":
        extra = {**extra, "target": f"{on_call['name']} (on_call)"}  # the step's own words
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
        language=wanted.get("language"),
        on_call=on_call,
    )


class _OnCallAt:
    """Who is on call for each group at one moment (oncall.yaml and the API's overrides), as
    the plan records it, looked up once per group for a batch; None for a group without a
    rotation (the chat tags alone, as before)."""

    def __init__(self, session: Session, rt: Any, at: datetime) -> None:
        self.session, self.policy, self.at = session, rt.policies.oncall, at
        self.found: dict[str | None, dict[str, str] | None] = {}

    def __call__(self, group: str | None) -> dict[str, str] | None:
        if group not in self.found:
            self.found[group] = self._look_up(group)
        return self.found[group]

    def _look_up(self, group: str | None) -> dict[str, str] | None:
        resolved = who_is_on_call(self.session, self.policy, group, self.at)
        if resolved is None:
            return None
        if resolved.person is None or resolved.on_call is None:
            return {"group": group or "", "problem": resolved.problem or "nobody"}
        return {
            "group": resolved.on_call.group,
            "username": resolved.person.username,
            "name": resolved.person.name,
            "email": resolved.person.email or "",
            "layer": resolved.on_call.layer,
            "source": resolved.on_call.source,
        }
