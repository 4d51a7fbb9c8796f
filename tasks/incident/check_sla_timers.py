"""Are the due SLA timers still due, and what does each say to whom."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import task

from itilflow import clock
from itilflow.models import FlowTrigger, Incident, IncidentStatus, get_timeline, session_scope
from itilflow.notifications import incident_context as messages
from itilflow.notifications.plans import NotificationRequest, request
from itilflow.policies import progress_interval
from itilflow.runtime import runtime
from itilflow.services import customer_updates, incidents
from itilflow.services.sla_timers import TIMER_SPECS, load_timer


@dataclass(frozen=True)
class TimerCheck:
    """One timer, checked: why it is skipped (None: it fires), what it says to whom, and what
    its timeline entry records besides the timer's own data."""

    trigger_id: int
    skip: str | None
    notifications: list[NotificationRequest]
    details: dict[str, Any] = field(default_factory=dict)


@task(name="check-sla-timers", retries=2, retry_delay_seconds=1)
def check_sla_timers(trigger_ids: list[int]) -> list[TimerCheck]:
    """For each timer: is it still due for action, and what does it say to whom."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        return [_check(session, rt, trigger_id) for trigger_id in trigger_ids]


def _check(session: Any, rt: Any, trigger_id: int) -> TimerCheck:
    trigger = load_timer(session, trigger_id)
    incident = incidents.load_incident(session, trigger.incident_id)
    skip = _skip(trigger, incident)
    if trigger.kind == customer_updates.KIND:
        return _customer_update(session, rt, trigger, incident, skip)
    spec = TIMER_SPECS[trigger.kind]
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
    wanted = request(
        trigger.incident_id or 0,
        spec.template,
        audience=audience,
        key=f"timer:{trigger.key}",
        actor="flow:sla-timer",
        extra=extra,
    )
    return TimerCheck(trigger_id=trigger_id, skip=skip, notifications=[wanted])


def _skip(trigger: FlowTrigger, incident: Incident) -> str | None:
    if trigger.cancelled_at is not None:
        return "cancelled"
    if trigger.done_at is not None:
        return "already fired"
    if not incident.is_open:
        return f"incident is {incident.status.value}"
    if trigger.due_at > clock.now():
        return "not due yet"  # the deadline moved after the claim
    if trigger.kind != "escalation" and incident.status == IncidentStatus.on_hold:
        return "on hold"
    return None


def _customer_update(
    session: Any, rt: Any, trigger: FlowTrigger, incident: Incident, skip: str | None
) -> TimerCheck:
    """The reporter's status update (when there is a reporter to mail) and, when nothing new
    was said to them since the last one, the assignee's reminder to write something."""
    entries = get_timeline(session=session, incident_id=incident.id or 0)
    content = customer_updates.update_content(
        entries, customer_updates.reporter_actors(session, incident)
    )
    interval = progress_interval(rt.policies.sla, incident.priority or "P4")
    next_update = clock.now() + interval if interval else None
    extra = {
        "news": content.news,
        "latest_comment": content.comment,
        "latest_comment_at": messages.when(content.comment_at, rt.policies, incident.priority),
        "next_update_at": messages.when(next_update, rt.policies, incident.priority),
    }
    wanted: list[NotificationRequest] = []
    if incident.reporter_email:
        wanted.append(
            request(
                incident.id or 0,
                "customer_update",
                audience=["reporter"],
                key=f"timer:{trigger.key}",
                actor="flow:customer-update",
                extra=extra,
                language=customer_updates.reporter_language(session, incident),
            )
        )
    if content.remind_assignee:
        wanted.append(
            request(
                incident.id or 0,
                "customer_update_reminder",
                audience=["assignee"],
                key=f"timer:{trigger.key}:reminder",
                actor="flow:customer-update",
                extra={
                    "reporter_told": bool(incident.reporter_email),
                    "latest_comment_at": extra["latest_comment_at"],
                    "next_update_at": extra["next_update_at"],
                },
            )
        )
    details = {
        "to_reporter": bool(incident.reporter_email),
        "news": content.news,
        "reminded": content.remind_assignee,
    }
    return TimerCheck(trigger.id or 0, skip, wanted, details)


def _last_update(session: Any, incident_id: int | None, rt: Any) -> str | None:
    updates = [
        entry
        for entry in get_timeline(session=session, incident_id=incident_id or 0)
        if entry.kind in ("commented", "acknowledged")
    ]
    return messages.when(updates[-1].at, rt.policies, None) if updates else None
