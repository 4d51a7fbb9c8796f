"""The fired SLA timers on their incidents' timelines, and the next timers planned."""

from __future__ import annotations

from typing import Any

from prefect import task

from itilflow import clock, metrics
from itilflow.models import add_timeline, finish_trigger, session_scope
from itilflow.runtime import runtime
from itilflow.services import incidents
from itilflow.services.sla_timers import TIMER_SPECS, load_timer, sync_triggers


@task(name="record-sla-timers", retries=2, retry_delay_seconds=1)
def record_sla_timers(
    trigger_ids: list[int], details: dict[int, dict[str, Any]] | None = None
) -> None:
    """Write each escalation, breach or update to its timeline, close the timer, plan the next
    one. `details`: what a timer's entry records besides its own data (by trigger id)."""
    rt = runtime()
    details = details or {}
    with session_scope(rt.engine) as session:
        for trigger_id in trigger_ids:
            _record(session, rt, trigger_id, details.get(trigger_id, {}))


def _record(session: Any, rt: Any, trigger_id: int, details: dict[str, Any]) -> None:
    trigger = load_timer(session, trigger_id)
    if trigger.done_at is not None:
        return  # a retried run: recorded already
    incident = incidents.load_incident(session, trigger.incident_id)
    spec = TIMER_SPECS[trigger.kind]
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
            **details,
        },
    )
    finish_trigger(session=session, trigger_id=trigger_id, flow_run_id=None)
    if spec.target:  # a breach of the response or resolution target
        metrics.SLA_BREACHES.labels(spec.target, incident.priority or "none").inc()
    session.flush()
    session.expire_all()
    sync_triggers(session=session, incident=incident, policies=rt.policies)
