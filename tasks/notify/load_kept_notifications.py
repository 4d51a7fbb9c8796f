"""Load the plans kept for another delivery."""

from __future__ import annotations

from prefect import task

from itilflow.models import FlowTrigger, session_scope
from itilflow.notifications.plans import NotificationPlan
from itilflow.runtime import runtime


@task(name="load-kept-notifications")
def load_kept_notifications(trigger_ids: list[int]) -> list[NotificationPlan]:
    """The plans that `record_failed_notifications` kept for another delivery."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        triggers = [session.get(FlowTrigger, trigger_id) for trigger_id in trigger_ids]
        return [t.data["plan"] for t in triggers if t is not None and t.kind == "notify"]
