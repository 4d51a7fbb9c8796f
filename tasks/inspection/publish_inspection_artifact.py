from __future__ import annotations

import re
from typing import Any

from prefect import task
from prefect.artifacts import acreate_table_artifact

from itilflow.tasks.inspection.raise_inspection_incidents import InspectionAction


def artifact_key(group: str) -> str:
    """Artifact keys take lower-case letters, digits and dashes only."""
    return "inspection-" + (re.sub(r"[^a-z0-9-]+", "-", group.lower()).strip("-") or "group")


@task(name="publish-inspection-artifact")
async def publish_inspection_artifact(
    group: str, run_id: int, results: list[dict[str, Any]], actions: list[InspectionAction]
) -> str:
    """A table in the Prefect UI: every target and check, its status, value and incident."""
    incident_of = {(a.target, a.check): f"{a.incident} ({a.action})" for a in actions}
    order = {"error": 0, "critical": 1, "warning": 2, "ok": 3}
    rows = [
        {
            "target": r["target"],
            "check": r["check_name"],
            "status": r["status"],
            "value": "" if r["value"] is None else f"{r['value']:g}{r['unit']}",
            "message": r["message"],
            "attempts": r.get("attempts", 1),
            "incident": incident_of.get((r["target"], r["check_name"]), ""),
        }
        for r in sorted(results, key=lambda r: (order.get(r["status"], 9), r["target"]))
    ]
    counts = {s: sum(1 for r in results if r["status"] == s) for s in order}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no checks"
    artifact_id = await acreate_table_artifact(
        table=rows,
        key=artifact_key(group),
        description=f"Inspection of group **{group}** (run {run_id}): {summary}",
    )
    return str(artifact_id)
