"""Notifications that failed through all of the engine's retries, delivered again later."""

from __future__ import annotations

from prefect import flow

from itilflow.flows.naming import triggers_run_name
from itilflow.tasks.notify.notify_incident import deliver_notifications, load_kept_notifications


@flow(name="redeliver-notifications", flow_run_name=triggers_run_name("notifications"))
async def redeliver_notifications(trigger_ids: list[int]) -> int:
    """Send what is still undelivered; while a channel refuses, the run fails and the runner
    tries again with back-off. Returns how many messages were sent."""
    plans = load_kept_notifications(trigger_ids)
    return await deliver_notifications(plans)
