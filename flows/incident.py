"""The incident process: a new incident is classified, assigned, announced and put on the clock;
a resolved one is announced and its reporter asked how it went."""

from __future__ import annotations

from prefect import flow

from itilflow.tasks.assign_incident import assign_incident
from itilflow.tasks.classify_incident import classify_incident
from itilflow.tasks.match_known_error import match_known_error
from itilflow.tasks.notify_incident import notify
from itilflow.tasks.send_survey import send_survey
from itilflow.tasks.start_sla_timers import start_sla_timers


@flow(name="open-incident", flow_run_name="open INC-{incident_id:06d}", retries=1)
async def open_incident(incident_id: int) -> str:
    """Classify, assign, notify the assignee and the routed channels, start the SLA timers."""
    priority = classify_incident(incident_id)
    assign_incident(incident_id)
    known_error = match_known_error(incident_id)
    await notify(
        incident_id,
        "incident_opened",
        audience=["assignee", "on_call"],
        key="opened",
        actor="flow:open-incident",
        extra={"known_error": known_error},
    )
    start_sla_timers(incident_id)
    return priority


@flow(name="incident-resolved", flow_run_name="resolved INC-{incident_id:06d}", retries=1)
async def incident_resolved(incident_id: int, resolution: int = 1) -> None:
    """Tell the routed channels and ask the reporter for a score."""
    await notify(
        incident_id,
        "incident_resolved",
        audience=["on_call"],
        key=f"resolved:{resolution}",
        actor="flow:incident-resolved",
    )
    await send_survey(incident_id, resolution)
