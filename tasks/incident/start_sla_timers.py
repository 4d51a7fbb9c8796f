from __future__ import annotations

from prefect import task

from itilflow.models import add_timeline, list_triggers, session_scope
from itilflow.runtime import runtime
from itilflow.services import incidents
from itilflow.services.sla_timers import TIMER_KINDS, sync_triggers


@task(name="start-sla-timers", retries=2, retry_delay_seconds=1)
def start_sla_timers(incident_ids: list[int]) -> dict[int, int]:
    """Store each incident's deadlines as triggers the runner fires on time.
    Returns incident id -> number of pending timers."""
    rt = runtime()
    started: dict[int, int] = {}
    with session_scope(rt.engine) as session:
        for incident_id in incident_ids:
            incident = incidents.load_incident(session, incident_id)
            sync_triggers(session=session, incident=incident, policies=rt.policies)
            pending = [
                trigger
                for trigger in list_triggers(session=session, incident_id=incident_id)
                if trigger.kind in TIMER_KINDS and trigger.pending
            ]
            add_timeline(
                session=session,
                incident_id=incident_id,
                kind="sla_started",
                actor="flow:open-incident",
                message=f"{len(pending)} timers",
                data={"timers": [f"{t.key} at {t.due_at.isoformat()}" for t in pending]},
            )
            started[incident_id] = len(pending)
    return started
