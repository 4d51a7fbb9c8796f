"""Plan the mail and chat that tell a change's outcome."""

from __future__ import annotations

from prefect import task

from itilflow.models import Subject, change_number, notified_keys, session_scope
from itilflow.notifications import render_message
from itilflow.notifications.change_context import change_context
from itilflow.notifications.plans import NotificationPlan, channels_left, make_plan
from itilflow.runtime import runtime
from itilflow.services import changes
from itilflow.tasks.change.record_change_outcome import summary_of

ACTOR = "flow:change"


@task(name="plan-change-notification", retries=2, retry_delay_seconds=1)
def plan_change_notification(change_id: int, outcome: str) -> list[NotificationPlan]:
    """The requester by email and the policy's chat tags; nothing when nobody is to be told or
    an earlier run already told them (the key is the outcome of the change's version)."""
    rt = runtime()
    subject = Subject("change", change_id)
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        context = {
            "change": change_context(
                change, policies=rt.policies, public_url=rt.settings.public_url or ""
            ),
            "outcome": outcome.replace("_", " "),
            "summary": summary_of(change) if change.review else outcome.replace("_", " "),
        }
        address = change.requester_email
        key = f"outcome:{outcome}:v{change.version}"
        delivered = notified_keys(session=session, subjects=[subject])
    chat = rt.policies.change.notify_tags and rt.settings.apprise_config
    plan = make_plan(
        subject,
        number=change_number(change_id),
        key=key,
        template="change_outcome",
        actor=ACTOR,
        emails=[address] if address else [],
        tags=list(rt.policies.change.notify_tags) if chat else [],
        message=render_message("change_outcome", rt.policies.change.language, context),
    )
    return [plan] if channels_left(plan, delivered) else []
