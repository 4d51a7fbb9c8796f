"""One incident's message rendered into a delivery plan, in its language and its mail thread:
the same for the incident flows' notifications (tasks/notify/plan_notifications.py) and for
the mails to the reporter kept in the transaction that calls for them (an acknowledgement of a
mailed request, an agent's comment to the reporter)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from itilflow.models import Incident, Subject
from itilflow.notifications.incident_context import incident_context
from itilflow.notifications.mail_thread import thread_headers
from itilflow.notifications.messages import render_message
from itilflow.notifications.plans import NotificationPlan, make_plan
from itilflow.policies import Policies, route_notification


def incident_plan(
    session: Session,
    incident: Incident,
    *,
    template: str,
    key: str,
    actor: str,
    emails: list[str],
    tags: list[str],
    extra: dict[str, Any],
    policies: Policies,
    public_url: str,
    mail_from: str,
    language: str | None = None,
    on_call: dict[str, str] | None = None,
) -> NotificationPlan:
    """`language`: the recipient's, when it is not the incident's (a reporter's own);
    `on_call`: whom an "on_call" audience reached, recorded with each delivery."""
    assert incident.id is not None
    route = route_notification(policies.routing, incident.priority or "P4", incident.group_name)
    context = {
        "incident": incident_context(session, incident, policies=policies, public_url=public_url),
        **extra,
    }
    return make_plan(
        Subject("incident", incident.id),
        number=incident.number,
        key=key,
        template=template,
        actor=actor,
        emails=emails,
        tags=tags,
        message=render_message(template, language or incident.language or route.language, context),
        on_call=on_call,
        headers=thread_headers(
            session, incident.id, key=key, template=template, mail_from=mail_from
        ),
    )


def reporter_plan(
    session: Session,
    incident: Incident,
    *,
    template: str,
    key: str,
    actor: str,
    extra: dict[str, Any],
    policies: Policies,
    public_url: str,
    mail_from: str,
) -> NotificationPlan | None:
    """A mail to the incident's reporter, or None when nobody reported it by address."""
    if not incident.reporter_email:
        return None
    return incident_plan(
        session,
        incident,
        template=template,
        key=key,
        actor=actor,
        emails=[incident.reporter_email],
        tags=[],
        extra=extra,
        policies=policies,
        public_url=public_url,
        mail_from=mail_from,
    )
