"""Are the due SLA timers still due, and what does each say to whom."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import task

from itilflow import clock
from itilflow.models import IncidentStatus, get_timeline, session_scope
from itilflow.notifications import incident_context as messages
from itilflow.notifications.plans import NotificationRequest, request
from itilflow.runtime import runtime
from itilflow.services import incidents
from itilflow.services.sla_timers import TIMER_SPECS, load_timer


@dataclass(frozen=True)
class TimerCheck:
    """One timer, checked: why it is skipped (None: it fires) and what it says to whom."""

    trigger_id: int
    skip: str | None
    notification: NotificationRequest


@task(name="check-sla-timers", retries=2, retry_delay_seconds=1)
def check_sla_timers(trigger_ids: list[int]) -> list[TimerCheck]:
    """For each timer: is it still due for action, and what does it say to whom."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        return [_check(session, rt, trigger_id) for trigger_id in trigger_ids]


def _check(session: Any, rt: Any, trigger_id: int) -> TimerCheck:
    trigger = load_timer(session, trigger_id)
    incident = incidents.load_incident(session, trigger.incident_id)
    spec = TIMER_SPECS[trigger.kind]
    skip = None
    if trigger.cancelled_at is not None:
        skip = "cancelled"
    elif trigger.done_at is not None:
        skip = "already fired"
    elif not incident.is_open:
        skip = f"incident is {incident.status.value}"
    elif trigger.due_at > clock.now():
        skip = "not due yet"  # the deadline moved after the claim
    elif trigger.kind != "escalation" and incident.status == IncidentStatus.on_hold:
        skip = "on hold"
    audience = spec.audience or [trigger.data.get("notify", "assignee")]
    due = messages.when(trigger.due_at, rt.policies, incident.priority)
    extra: dict[str, Any] = {
        "escalation": {
            "step": int(trigger.data.get("step", 0)) + 1,
            "target": trigger.data.get("notify", "assignee"),
            "overdue_since": due,
        },
        "sla_breach": {"sla": spec.target, "due_at": due},
        "progress_reminder": {"last_update": _last_update(session, incident.id, rt)},
    }[spec.template]
    return TimerCheck(
        trigger_id=trigger_id,
        skip=skip,
        notification=request(
            trigger.incident_id,
            spec.template,
            audience=audience,
            key=f"timer:{trigger.key}",
            actor="flow:sla-timer",
            extra=extra,
        ),
    )


def _last_update(session: Any, incident_id: int | None, rt: Any) -> str | None:
    updates = [
        entry
        for entry in get_timeline(session=session, incident_id=incident_id or 0)
        if entry.kind in ("commented", "acknowledged")
    ]
    return messages.when(updates[-1].at, rt.policies, None) if updates else None
