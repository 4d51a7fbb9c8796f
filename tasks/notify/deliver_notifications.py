"""Deliver planned messages of any process by email and chat, and record each delivery."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from prefect import task

from itilflow import metrics
from itilflow.models import add_subject_entry, notified_keys, session_scope
from itilflow.notifications import NotificationError, RenderedMessage, asend_chat, asend_email
from itilflow.notifications.mail import Attachment
from itilflow.notifications.plans import (
    NotificationPlan,
    channels_left,
    recipients,
    subject_of,
)
from itilflow.runtime import runtime


@task(name="deliver-notifications")
async def deliver_notifications(plans: list[NotificationPlan]) -> int:
    """Send every planned message on every channel not yet delivered, all at once, and record
    each delivery as soon as it lands. Raises when any failed, so that the engine's retry sends
    only those again. Returns how many were sent."""
    rt = runtime()
    pending = await asyncio.to_thread(_undelivered, rt, plans)
    # A mail relay or chat service takes a few connections at a time, not a burst's worth.
    gate = asyncio.Semaphore(rt.settings.notify_concurrency)
    results = await asyncio.gather(
        *(_send(rt, plan, channel, gate) for plan, channel in pending), return_exceptions=True
    )
    sent = [item for item, result in zip(pending, results, strict=True) if result is None]
    metrics.note_deliveries(
        (channel, result is None) for (_, channel), result in zip(pending, results, strict=True)
    )
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


def _undelivered(rt: Any, plans: list[NotificationPlan]) -> list[tuple[NotificationPlan, str]]:
    with session_scope(rt.engine) as session:
        delivered = notified_keys(session=session, subjects={subject_of(p) for p in plans})
    return [(plan, channel) for plan in plans for channel in channels_left(plan, delivered)]


async def _send(rt: Any, plan: NotificationPlan, channel: str, gate: asyncio.Semaphore) -> None:
    message = plan["message"]
    async with gate:
        if channel == "email":
            await asend_email(
                RenderedMessage(**message),
                to=plan["emails"],
                settings=rt.mail,
                attachments=[_attachment(a) for a in plan.get("attachments", [])],
                headers=plan.get("headers"),
            )
        else:
            await asend_chat(
                title=message["chat_title"],
                body=message["chat_body"],
                tags=plan["tags"],
                config=rt.settings.apprise_config,
            )


def _attachment(described: dict[str, str]) -> Attachment:
    data = Path(described["path"]).read_bytes()
    return Attachment(described["filename"], data, described.get("mime_type", "application/pdf"))


def _record_delivered(rt: Any, sent: list[tuple[NotificationPlan, str]]) -> None:
    with session_scope(rt.engine) as session:
        for plan, channel in sent:
            to = recipients(plan, channel)
            data: dict[str, Any] = {"key": plan["key"], "channel": channel, "to": to}
            message = f"{plan['template']} by {channel} to {', '.join(to)}"
            if on_call := plan.get("on_call"):
                data["on_call"] = on_call
                message += f"; on call: {_on_call_text(on_call)}"
            add_subject_entry(
                session=session,
                subject=subject_of(plan),
                kind="notified",
                actor=plan["actor"],
                message=message,
                data=data,
            )


def _on_call_text(on_call: dict[str, str]) -> str:
    if "username" in on_call:
        return f"{on_call['name']} ({on_call['username']})"
    return f"nobody ({on_call.get('problem', 'unknown')})"
