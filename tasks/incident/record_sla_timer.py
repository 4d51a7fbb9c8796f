from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import task

from itilflow import clock
from itilflow.models import (
    FlowTrigger,
    IncidentStatus,
    add_timeline,
    finish_trigger,
    get_timeline,
    session_scope,
)
from itilflow.notifications import incident_context as messages
from itilflow.runtime import runtime
from itilflow.services import incidents
from itilflow.services.sla_timers import sync_triggers
from itilflow.tasks.notify.notify_incident import NotificationRequest, request


@dataclass(frozen=True)
class _TimerSpec:
    """What a timer says (its template), how the timeline calls it, to whom (None: the person
    the escalation step names) and which SLA target it is about."""

    template: str
    timeline: str
    audience: list[str] | None = None
    target: str | None = None


# What each timer says, to whom, and how the timeline calls it.
_TIMERS: dict[str, _TimerSpec] = {
    "escalation": _TimerSpec(template="escalation", timeline="escalated"),
    "response_due": _TimerSpec(
        template="sla_breach",
        timeline="sla_breached",
        audience=["assignee", "group_lead", "on_call"],
        target="response",
    ),
    "resolution_due": _TimerSpec(
        template="sla_breach",
        timeline="sla_breached",
        audience=["assignee", "group_lead", "on_call"],
        target="resolution",
    ),
    "progress": _TimerSpec(
        template="progress_reminder", timeline="progress_reminder", audience=["assignee"]
    ),
}


def _load(session: Any, trigger_id: int) -> FlowTrigger:
    trigger = session.get(FlowTrigger, trigger_id)
    if trigger is None:
        raise LookupError(f"trigger {trigger_id} not found")
    return trigger


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
    trigger = _load(session, trigger_id)
    incident = incidents.load_incident(session, trigger.incident_id)
    spec = _TIMERS[trigger.kind]
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


@task(name="record-sla-timers", retries=2, retry_delay_seconds=1)
def record_sla_timers(trigger_ids: list[int]) -> None:
    """Write each escalation or breach to its timeline, close the timer, plan the next one."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        for trigger_id in trigger_ids:
            _record(session, rt, trigger_id)


def _record(session: Any, rt: Any, trigger_id: int) -> None:
    trigger = _load(session, trigger_id)
    if trigger.done_at is not None:
        return  # a retried run: recorded already
    incident = incidents.load_incident(session, trigger.incident_id)
    spec = _TIMERS[trigger.kind]
    lateness = (clock.now() - trigger.due_at).total_seconds()
    add_timeline(
        session=session,
        incident_id=trigger.incident_id,
        kind=spec.timeline,
        actor="flow:sla-timer",
        message=f"{trigger.key} due {trigger.due_at.isoformat()}",
        data={
            "key": trigger.key,
            "due_at": trigger.due_at.isoformat(),
            "late_seconds": round(lateness, 3),
            **trigger.data,
        },
    )
    finish_trigger(session=session, trigger_id=trigger_id, flow_run_id=None)
    session.flush()
    session.expire_all()
    sync_triggers(session=session, incident=incident, policies=rt.policies)


def _last_update(session: Any, incident_id: int | None, rt: Any) -> str | None:
    updates = [
        entry
        for entry in get_timeline(session=session, incident_id=incident_id or 0)
        if entry.kind in ("commented", "acknowledged")
    ]
    return messages.when(updates[-1].at, rt.policies, None) if updates else None
