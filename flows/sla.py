"""SLA timers and escalation steps came due: tell the people the policy names, once.

One flow run fires every timer due together, with the per-timer work inside its tasks: one run
per timer kept about one timer a second (bench/sla_timers.py).
"""

from __future__ import annotations

from prefect import flow

from itilflow.flows.naming import triggers_run_name
from itilflow.tasks.incident.record_sla_timer import check_sla_timers, record_sla_timers
from itilflow.tasks.notify.notify_incident import notify_incidents


@flow(name="sla-timers", flow_run_name=triggers_run_name("timers"), retries=1)
async def fire_sla_timers(trigger_ids: list[int]) -> dict[str, int]:
    steps = check_sla_timers(trigger_ids)
    due = [step for step in steps if step["skip"] is None]
    await notify_incidents([step["notification"] for step in due])
    record_sla_timers([step["trigger_id"] for step in due])
    return {"fired": len(due), "skipped": len(steps) - len(due)}
