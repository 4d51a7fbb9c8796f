"""Patrol inspection: check every target of a group, keep the results, turn failing checks into
incidents and recovered ones into resolutions, and show the run as a table in the Prefect UI.

Each group of inspection.yaml is a deployment `inspection-<group>` in prefect.yaml, on the
group's cron schedule and time zone, and runs on demand from the UI.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from itilflow import clock
from itilflow.flows.notify import deliver_and_keep
from itilflow.models import proactive_number
from itilflow.tasks.inspection.plan_proactive_notifications import plan_proactive_notifications
from itilflow.tasks.inspection.publish_inspection_artifact import publish_inspection_artifact
from itilflow.tasks.inspection.raise_inspection_incidents import raise_inspection_incidents
from itilflow.tasks.inspection.raise_proactive_notices import raise_proactive_notices
from itilflow.tasks.inspection.record_inspection_results import record_inspection_results
from itilflow.tasks.inspection.run_inspection_checks import run_inspection_checks


@flow(name="patrol-inspection", flow_run_name="inspect {group}")
async def patrol_inspection(group: str) -> dict[str, Any]:
    """Inspect `group` (a group of inspection.yaml). A target that does not answer is an `error`
    result, never a failed run."""
    started_at = clock.now()
    results = await run_inspection_checks(group)
    run_id = record_inspection_results(group, started_at, results)
    actions = raise_inspection_incidents(run_id)
    # Trouble foreseen inside proactive.yaml's horizon: a proposal to the owner group and a
    # notice to the customer, before it happens.
    notices = raise_proactive_notices(run_id)
    await deliver_and_keep(plan_proactive_notifications(notices))
    await publish_inspection_artifact(group, run_id, results, actions)
    counts = {
        s: sum(1 for r in results if r["status"] == s)
        for s in ("ok", "warning", "critical", "error")
    }
    return {
        "run_id": run_id,
        "checks": len(results),
        **counts,
        "incidents": {a.incident: a.action for a in actions},
        "proactive": {proactive_number(n["proactive_id"]): n["event"] for n in notices},
    }
