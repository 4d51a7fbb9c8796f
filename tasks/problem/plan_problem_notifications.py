"""Tell a problem's owner (email) and problem.yaml's chat tags that it was opened, grew or came
back. Each notification is keyed on the timeline entry of what happened, so a retried run sends
nothing twice; sending is a task per channel (shared with the incident notifications)."""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import task

from itilflow.models import (
    add_problem_entry,
    get_problem_timeline,
    problem_number,
    session_scope,
)
from itilflow.notifications import render_message
from itilflow.notifications.problem_context import owner_emails, problem_context
from itilflow.runtime import runtime
from itilflow.services import problems
from itilflow.tasks.notify.notify_incident import deliver

# What the owner hears about; resolved and closed are on the timeline only.
ANNOUNCED = ("opened", "updated", "reopened")
ACTOR = "flow:review-problems"


@task(name="plan-problem-notification", retries=2, retry_delay_seconds=1)
def plan_problem_notification(event: problems.ProblemEvent) -> dict[str, Any]:
    """Who gets what; channels that already delivered this event's key get nothing."""
    rt = runtime()
    key = f"{event.event}:{event.entry_id}"
    with session_scope(rt.engine) as session:
        problem = problems.load_problem(session, event.problem_id)
        delivered = {
            entry.data.get("channel")
            for entry in get_problem_timeline(session=session, problem_id=event.problem_id)
            if entry.kind == "notified" and entry.data.get("key") == key
        }
        context = {
            "problem": problem_context(
                session, problem, policies=rt.policies, public_url=rt.settings.public_url or ""
            ),
            "event": event.event,
        }
        emails = owner_emails(session, problem)
    message = render_message("problem_opened", rt.policies.problem.language, context)
    return {
        "key": key,
        "emails": [] if "email" in delivered else emails,
        "tags": [] if "chat" in delivered else list(rt.policies.problem.notify_tags),
        "message": {
            "subject": message.subject,
            "html": message.html,
            "text": message.text,
            "chat_title": message.chat_title,
            "chat_body": message.chat_body,
        },
    }


@task(name="record-problem-notification")
def record_problem_notification(
    problem_id: int, plan: dict[str, Any], outcomes: dict[str, str | None]
) -> None:
    rt = runtime()
    with session_scope(rt.engine) as session:
        for channel, error in outcomes.items():
            to = plan["emails"] if channel == "email" else plan["tags"]
            data = {"key": plan["key"], "channel": channel, "to": to}
            if error is None:
                add_problem_entry(
                    session=session,
                    problem_id=problem_id,
                    kind="notified",
                    actor=ACTOR,
                    message=f"problem_opened by {channel} to {', '.join(to)}",
                    data=data,
                )
            else:
                add_problem_entry(
                    session=session,
                    problem_id=problem_id,
                    kind="notification_failed",
                    actor=ACTOR,
                    message=f"problem_opened by {channel} to {', '.join(to)} failed: {error}",
                    data={**data, "error": error},
                )


async def notify_problem_owner(event: problems.ProblemEvent) -> dict[str, str | None]:
    """Plan, send on every channel at once, record. Returns channel -> error (None = sent)."""
    plan = plan_problem_notification(event)
    outcomes = await deliver(plan)
    if outcomes:
        record_problem_notification(event.problem_id, plan, outcomes)
    return outcomes


async def notify_problem_owners(
    events: list[problems.ProblemEvent],
) -> dict[str, dict[str, str | None]]:
    """Announce every opened, grown or reopened problem; returns PRB number -> outcomes."""
    announced = [event for event in events if event.event in ANNOUNCED]
    results = await asyncio.gather(*(notify_problem_owner(event) for event in announced))
    return {
        f"{problem_number(event.problem_id)} {event.event}": outcome
        for event, outcome in zip(announced, results, strict=True)
    }
