"""Keep what the engine's retries could not deliver, for the runner to deliver later."""

from __future__ import annotations

from datetime import timedelta

from prefect import task

from itilflow import clock
from itilflow.models import (
    add_subject_entry,
    notified_keys,
    session_scope,
)
from itilflow.notifications.plans import (
    NotificationPlan,
    channels_left,
    keep_for_delivery,
    recipients,
    subject_of,
)
from itilflow.runtime import runtime


@task(name="record-failed-notifications", retries=2, retry_delay_seconds=1)
def record_failed_notifications(plans: list[NotificationPlan], error: str) -> int:
    """What the engine's retries could not deliver goes on its subject's timeline and is kept,
    as a trigger, for another delivery later: a notification is never dropped. Returns how
    many plans were kept."""
    rt = runtime()
    retry_at = clock.now() + timedelta(seconds=rt.settings.redeliver_after_seconds)
    undelivered: list[NotificationPlan] = []
    with session_scope(rt.engine) as session:
        delivered = notified_keys(session=session, subjects={subject_of(p) for p in plans})
        for plan in plans:
            subject = subject_of(plan)
            channels = channels_left(plan, delivered)
            for channel in channels:
                to = recipients(plan, channel)
                add_subject_entry(
                    session=session,
                    subject=subject,
                    kind="notification_failed",
                    actor=plan["actor"],
                    message=(
                        f"{plan['template']} by {channel} to {', '.join(to)} failed, "
                        f"trying again from {retry_at.isoformat(timespec='seconds')}: {error}"
                    ),
                    data={"key": plan["key"], "channel": channel, "to": to, "error": error},
                )
            if channels:
                undelivered.append(plan)
        return keep_for_delivery(session, undelivered, due_at=retry_at)
