"""Inspection results that foresee trouble open proactive notices (services/proactive.py): a
disk filling up or a certificate expiring inside proactive.yaml's horizon."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import task

from itilflow import clock
from itilflow.models import InspectionRun, list_run_results, session_scope
from itilflow.policies.inspection import Check, TargetGroup, check_name
from itilflow.runtime import runtime
from itilflow.services import proactive


@task(name="raise-proactive-notices", retries=2, retry_delay_seconds=1)
def raise_proactive_notices(run_id: int) -> list[dict[str, Any]]:
    """What each result did to its CI's notice: proposed, updated, ended. One transaction: a
    retried task finds the notices the first attempt opened (one open per CI and kind)."""
    rt = runtime()
    if not rt.policies.proactive.enabled:
        return []
    events: list[dict[str, Any]] = []
    with session_scope(rt.engine) as session:
        run = session.get(InspectionRun, run_id)
        if run is None:
            raise LookupError(f"inspection run {run_id} not found")
        checks = _checks(rt.policies.inspection.group(run.group))
        now = clock.now()
        for result in list_run_results(session=session, run_id=run_id):
            found = checks.get((result.target, result.check_name)) or checks.get(
                (result.target, result.check_name.rsplit(".", 1)[0])
            )
            if found is None:
                continue
            ci, check = found
            seen = proactive.observation_of(result, ci, check)
            if seen is not None:
                found_events = proactive.observe(session, rt.policies, seen, now=now, run_id=run_id)
                events += [asdict(event) for event in found_events]
    return events


def _checks(group: TargetGroup) -> dict[tuple[str, str], tuple[str, Check]]:
    """(target, check name) -> (its CI, the check); a node_exporter metric's result is named
    `<check>.<metric>`."""
    return {
        (target_name, check_name(check)): (target.ci or target_name, check)
        for target_name, target in group.targets.items()
        for check in target.checks
    }
