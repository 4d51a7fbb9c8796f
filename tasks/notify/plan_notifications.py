"""Tell people about incidents: plan who and what, send by email and chat, record the outcome.

A flow run handles a batch of incidents, so their messages go out together in one task: each
delivery is written to the timeline as soon as it lands, and the engine's retry of the task sends
only what failed (a message recorded under its key is never sent again). What the retries could
not deliver is written to the timeline and kept as a `notify` trigger that the runner delivers
later: a notification is never dropped. Problems use `deliver()`, one task per channel.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, TypedDict

from prefect import task
from prefect.states import State
from sqlmodel import col, select

from itilflow import clock
from itilflow.models import (
    FlowTrigger,
    Incident,
    TimelineEntry,
    add_timeline,
    add_trigger,
    get_engineer,
    get_group,
    list_engineers,
    list_triggers,
    session_scope,
)
from itilflow.notifications import (
    NotificationError,
    RenderedMessage,
    asend_chat,
    asend_email,
    render_message,
)
from itilflow.notifications.incident_context import incident_context, resolution_note
from itilflow.policies import route_notification
from itilflow.runtime import runtime
from itilflow.services import incidents


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


class NotificationRequest(TypedDict):
    """One message a flow wants sent about one incident."""

    incident_id: int
    template: str
    audience: list[str]
    key: str  # unique per incident and message: a retried run finds it on the timeline
    actor: str
    extra: dict[str, Any]


def request(
    incident_id: int,
    template: str,
    *,
    audience: list[str],
    key: str,
    actor: str,
    extra: dict[str, Any] | None = None,
) -> NotificationRequest:
    return NotificationRequest(
        incident_id=incident_id,
        template=template,
        audience=audience,
        key=key,
        actor=actor,
        extra=extra or {},
    )


def _delivered(session: Any, incident_ids: list[int]) -> set[tuple[int, str, str]]:
    """(incident id, key, channel) of every notification already on these timelines."""
    rows = session.exec(
        select(TimelineEntry.incident_id, TimelineEntry.data).where(
            col(TimelineEntry.incident_id).in_(incident_ids), TimelineEntry.kind == "notified"
        )
    )
    return {(incident_id, data.get("key"), data.get("channel")) for incident_id, data in rows}


def _plan(session: Any, rt: Any, wanted: NotificationRequest) -> dict[str, Any]:
    incident_id, template, extra = wanted["incident_id"], wanted["template"], wanted["extra"]
    audience = wanted["audience"]
    incident = incidents.load_incident(session, incident_id)
    route = route_notification(rt.policies.routing, incident.priority or "P4", incident.group_name)
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
        "incident_id": incident_id,
        "number": incident.number,
        "key": wanted["key"],
        "template": template,
        "actor": wanted["actor"],
        "emails": emails,
        "tags": tags,
        "message": {
            "subject": message.subject,
            "html": message.html,
            "text": message.text,
            "chat_title": message.chat_title,
            "chat_body": message.chat_body,
        },
    }


@task(name="plan-notifications", retries=2, retry_delay_seconds=1)
def plan_notifications(requests: list[NotificationRequest]) -> list[dict[str, Any]]:
    """Who gets what, for every request; messages with nobody to reach are left out, and so
    are those an earlier run already delivered on every channel."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        delivered = _delivered(session, sorted({r["incident_id"] for r in requests}))
        plans = []
        for wanted in requests:
            plan = _plan(session, rt, wanted)
            if _channels_left(plan, delivered):
                plans.append(plan)
    return plans


def _channels_left(plan: dict[str, Any], delivered: set[tuple[int, str, str]]) -> list[str]:
    channels = [("email", plan["emails"]), ("chat", plan["tags"])]
    return [
        channel
        for channel, to in channels
        if to and (plan["incident_id"], plan["key"], channel) not in delivered
    ]


@task(name="send-email", retries=3, retry_delay_seconds=[2, 10, 30])
async def send_email(message: dict[str, str], to: list[str]) -> None:
    await asend_email(RenderedMessage(**message), to=to, settings=runtime().mail)


@task(name="send-chat", retries=3, retry_delay_seconds=[2, 10, 30])
async def send_chat(title: str, body: str, tags: list[str]) -> None:
    await asend_chat(title=title, body=body, tags=tags, config=runtime().settings.apprise_config)


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


def _record_delivered(rt: Any, sent: list[tuple[dict[str, Any], str]]) -> None:
    with session_scope(rt.engine) as session:
        for plan, channel in sent:
            to = plan["emails"] if channel == "email" else plan["tags"]
            add_timeline(
                session=session,
                incident_id=plan["incident_id"],
                kind="notified",
                actor=plan["actor"],
                message=f"{plan['template']} by {channel} to {', '.join(to)}",
                data={"key": plan["key"], "channel": channel, "to": to},
            )


async def _send(rt: Any, plan: dict[str, Any], channel: str, gate: asyncio.Semaphore) -> None:
    message = plan["message"]
    async with gate:
        if channel == "email":
            await asend_email(RenderedMessage(**message), to=plan["emails"], settings=rt.mail)
        else:
            await asend_chat(
                title=message["chat_title"],
                body=message["chat_body"],
                tags=plan["tags"],
                config=rt.settings.apprise_config,
            )


@task(name="deliver-notifications")
async def deliver_notifications(plans: list[dict[str, Any]]) -> int:
    """Send every planned message on every channel not yet delivered, all at once, and record
    each delivery as soon as it lands. Raises when any failed, so that the engine's retry sends
    only those again. Returns how many were sent."""
    rt = runtime()

    def left() -> list[tuple[dict[str, Any], str]]:
        with session_scope(rt.engine) as session:
            delivered = _delivered(session, sorted({plan["incident_id"] for plan in plans}))
        return [(plan, channel) for plan in plans for channel in _channels_left(plan, delivered)]

    pending = await asyncio.to_thread(left)
    # A mail relay or chat service takes a few connections at a time, not a burst's worth.
    gate = asyncio.Semaphore(rt.settings.notify_concurrency)
    results = await asyncio.gather(
        *(_send(rt, plan, channel, gate) for plan, channel in pending), return_exceptions=True
    )
    sent = [item for item, result in zip(pending, results, strict=True) if result is None]
    if sent:
        await asyncio.to_thread(_record_delivered, rt, sent)
    failures = [
        f"{plan['number']} {plan['template']} by {channel}: {result}"
        for (plan, channel), result in zip(pending, results, strict=True)
        if isinstance(result, BaseException)
    ]
    if failures:
        raise NotificationError(f"{len(failures)} of {len(pending)} failed: " + "; ".join(failures))
    return len(sent)


@task(name="record-failed-notifications", retries=2, retry_delay_seconds=1)
def record_failed_notifications(plans: list[dict[str, Any]], error: str) -> int:
    """What the engine's retries could not deliver goes on the timeline and is kept, as a
    trigger, for another delivery later: a notification is never dropped."""
    rt = runtime()
    retry_at = clock.now() + timedelta(seconds=rt.settings.redeliver_after_seconds)
    kept = 0
    with session_scope(rt.engine) as session:
        delivered = _delivered(session, sorted({plan["incident_id"] for plan in plans}))
        for plan in plans:
            channels = _channels_left(plan, delivered)
            for channel in channels:
                to = plan["emails"] if channel == "email" else plan["tags"]
                add_timeline(
                    session=session,
                    incident_id=plan["incident_id"],
                    kind="notification_failed",
                    actor=plan["actor"],
                    message=(
                        f"{plan['template']} by {channel} to {', '.join(to)} failed, "
                        f"trying again from {retry_at.isoformat(timespec='seconds')}: {error}"
                    ),
                    data={"key": plan["key"], "channel": channel, "to": to, "error": error},
                )
            key = f"notify:{plan['key']}"
            if channels and not _has_trigger(session, plan["incident_id"], key):
                add_trigger(
                    session=session,
                    incident_id=plan["incident_id"],
                    kind="notify",
                    key=key,
                    due_at=retry_at,
                    data={"plan": plan},
                )
                kept += 1
    return kept


def _has_trigger(session: Any, incident_id: int, key: str) -> bool:
    return any(t.key == key for t in list_triggers(session=session, incident_id=incident_id))


async def notify_incidents(requests: list[NotificationRequest]) -> None:
    """Plan, send everything at once (retried by the engine), and keep what finally failed."""
    plans = plan_notifications(requests)
    if not plans:
        return
    delays = runtime().settings.notify_retry_delays
    state = await deliver_notifications.with_options(
        retries=len(delays), retry_delay_seconds=delays
    )(plans, return_state=True)
    error = error_of(state)
    if error is not None:
        record_failed_notifications(plans, error)


@task(name="load-kept-notifications")
def load_kept_notifications(trigger_ids: list[int]) -> list[dict[str, Any]]:
    """The plans that `record_failed_notifications` kept for another delivery."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        triggers = [session.get(FlowTrigger, trigger_id) for trigger_id in trigger_ids]
        return [t.data["plan"] for t in triggers if t is not None and t.kind == "notify"]
