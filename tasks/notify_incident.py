"""Tell people about an incident: plan who and what, send by email and chat, record the outcome.

Sending is its own task per channel, so the engine retries a failed channel without resending the
other; what finally failed is written to the timeline. A notification already recorded under its
key is not sent again when a flow run is retried.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import task
from prefect.states import State

from itilflow import incidents
from itilflow.messages import incident_context, resolution_note
from itilflow.models import (
    Incident,
    add_timeline,
    get_engineer,
    get_group,
    get_timeline,
    list_engineers,
    session_scope,
)
from itilflow.notifications import RenderedMessage, asend_chat, asend_email, render_message
from itilflow.policies import route_notification
from itilflow.runtime import runtime

AUDIENCES = ("assignee", "group_lead", "manager", "group", "on_call", "reporter")


def _emails_for(session: Any, incident: Incident, audience: str) -> list[str]:
    group = get_group(session=session, name=incident.group_name)
    if audience == "reporter":
        return [incident.reporter_email] if incident.reporter_email else []
    if audience == "assignee":
        engineer = get_engineer(session=session, username=incident.assignee)
        if engineer and engineer.email:
            return [engineer.email]
        audience = "group"  # nobody assigned yet: the whole group hears of it
    if audience in ("group_lead", "manager"):
        username = getattr(group, "lead" if audience == "group_lead" else "manager", None)
        person = get_engineer(session=session, username=username)
        return [person.email] if person and person.email else []
    if audience == "group":
        if group and group.email:
            return [group.email]
        members = list_engineers(session=session, group=incident.group_name)
        return sorted(e.email for e in members if e.email and e.on_duty)
    return []


@task(name="plan-notification", retries=2, retry_delay_seconds=1)
def plan_notification(
    incident_id: int, template: str, audience: list[str], key: str, extra: dict[str, Any]
) -> dict[str, Any]:
    """Who gets what; `skip` when this key was already delivered by an earlier run."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        incident = incidents.load_incident(session, incident_id)
        delivered = {
            entry.data.get("channel")
            for entry in get_timeline(session=session, incident_id=incident_id)
            if entry.kind == "notified" and entry.data.get("key") == key
        }
        route = route_notification(
            rt.policies.routing, incident.priority or "P4", incident.group_name
        )
        emails = sorted(
            {
                address
                for who in audience
                if who != "on_call"
                for address in _emails_for(session, incident, who)
            }
        )
        if "assignee" in audience and not route.email_assignee:
            emails = sorted(set(emails) - set(_emails_for(session, incident, "assignee")))
        tags = list(route.tags) if "on_call" in audience else []
        if template == "incident_resolved":
            extra = {
                "resolution": resolution_note(session, incident_id),
                "known_error": None,
                **extra,
            }
        context = {
            "incident": incident_context(
                session, incident, policies=rt.policies, public_url=rt.settings.public_url or ""
            ),
            **extra,
        }
        message = render_message(template, incident.language or route.language, context)
    return {
        "key": key,
        "template": template,
        "emails": [] if "email" in delivered else emails,
        "tags": [] if "chat" in delivered else tags,
        "message": {
            "subject": message.subject,
            "html": message.html,
            "text": message.text,
            "chat_title": message.chat_title,
            "chat_body": message.chat_body,
        },
    }


@task(name="send-email", retries=3, retry_delay_seconds=[2, 10, 30])
async def send_email(message: dict[str, str], to: list[str]) -> None:
    await asend_email(RenderedMessage(**message), to=to, settings=runtime().mail)


@task(name="send-chat", retries=3, retry_delay_seconds=[2, 10, 30])
async def send_chat(title: str, body: str, tags: list[str]) -> None:
    await asend_chat(title=title, body=body, tags=tags, config=runtime().settings.apprise_config)


@task(name="record-notification")
def record_notification(
    incident_id: int, plan: dict[str, Any], outcomes: dict[str, str | None], actor: str
) -> None:
    rt = runtime()
    with session_scope(rt.engine) as session:
        for channel, error in outcomes.items():
            to = plan["emails"] if channel == "email" else plan["tags"]
            if error is None:
                add_timeline(
                    session=session,
                    incident_id=incident_id,
                    kind="notified",
                    actor=actor,
                    message=f"{plan['template']} by {channel} to {', '.join(to)}",
                    data={"key": plan["key"], "channel": channel, "to": to},
                )
            else:
                add_timeline(
                    session=session,
                    incident_id=incident_id,
                    kind="notification_failed",
                    actor=actor,
                    message=f"{plan['template']} by {channel} to {', '.join(to)} failed: {error}",
                    data={"key": plan["key"], "channel": channel, "to": to, "error": error},
                )


def error_of(state: State) -> str | None:
    """The failure as the engine recorded it (its message names the exception); reading the
    result instead would hand back an un-awaited coroutine inside an async flow."""
    if state.is_completed():
        return None
    return state.message or state.type.value


async def deliver(plan: dict[str, Any]) -> dict[str, str | None]:
    """Send a planned message by email and chat at once, each retried by the engine.
    Returns channel -> error (None = sent); channels with nobody to reach are left out."""
    message = plan["message"]
    delays = runtime().settings.notify_retry_delays
    retry = {"retries": len(delays), "retry_delay_seconds": delays}
    sends: dict[str, Any] = {}
    if plan["emails"]:
        sends["email"] = send_email.with_options(**retry)(
            message, plan["emails"], return_state=True
        )
    if plan["tags"]:
        sends["chat"] = send_chat.with_options(**retry)(
            message["chat_title"], message["chat_body"], plan["tags"], return_state=True
        )
    states = dict(zip(sends, await asyncio.gather(*sends.values()), strict=True))
    return {channel: error_of(state) for channel, state in states.items()}


async def notify(
    incident_id: int,
    template: str,
    *,
    audience: list[str],
    key: str,
    actor: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, str | None]:
    """Plan, send on every channel at once, record. Returns channel -> error (None = sent)."""
    plan = plan_notification(incident_id, template, audience, key, extra or {})
    outcomes = await deliver(plan)
    if outcomes:
        record_notification(incident_id, plan, outcomes, actor)
    return outcomes
