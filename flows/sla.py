"""An SLA timer or escalation step came due: tell the people the policy names, once."""

from __future__ import annotations

from prefect import flow

from itilflow.tasks.notify_incident import notify
from itilflow.tasks.record_sla_timer import check_sla_timer, record_sla_timer


@flow(name="sla-timer", flow_run_name="{kind} INC-{incident_id:06d}", retries=1)
async def fire_sla_timer(trigger_id: int, incident_id: int, kind: str) -> str:
    step = check_sla_timer(trigger_id)
    if step["skip"]:
        return f"skipped: {step['skip']}"
    await notify(
        incident_id,
        step["template"],
        audience=step["audience"],
        key=step["key"],
        actor="flow:sla-timer",
        extra=step["extra"],
    )
    record_sla_timer(trigger_id)
    return f"{kind} done"
