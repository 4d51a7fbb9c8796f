from __future__ import annotations

from typing import Any

from prefect import task
from prefect.runtime import flow_run

from itilflow.executors import ActionResult, NamedAction, PlanAbandoned, arun_action
from itilflow.models import add_change_entry, session_scope
from itilflow.runtime import runtime
from itilflow.services import changes


@task(name="run-change-action", task_run_name="{phase}: {name}")
async def run_change_action(
    change_id: int, phase: str, name: str, action: dict[str, Any]
) -> ActionResult:
    """Run one backup, step, check or undo; written to the timeline before and after, so a
    crash in between leaves the change marked as possibly half-applied.

    Only the change's own run may act: a run declared lost and taken over by a recovery stops
    here (PlanAbandoned) instead of racing the recovery's rollback."""
    rt = runtime()
    parsed = NamedAction.model_validate({"name": name, "do": action}).do
    this_run = flow_run.get_id()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        if this_run and change.flow_run_id != str(this_run):
            raise PlanAbandoned(
                f"{change.number} now belongs to run {change.flow_run_id}: this run "
                f"({this_run}) was declared lost and stops without touching it"
            )
        add_change_entry(
            session=session,
            change_id=change_id,
            kind=f"{phase}_started",
            actor="flow:implement-change",
            message=f"{phase} {name}: {parsed.describe()}",
            data={"phase": phase, "name": name},
        )
    result = await arun_action(parsed)
    with session_scope(rt.engine) as session:
        add_change_entry(
            session=session,
            change_id=change_id,
            kind=f"{phase}_{'ok' if result.ok else 'failed'}",
            actor="flow:implement-change",
            message=f"{phase} {name}: {result.summary}",
            data={
                "phase": phase,
                "name": name,
                "output": result.output,
                "exit_code": result.exit_code,
                "status_code": result.status_code,
                "seconds": round(result.duration_seconds, 3),
            },
        )
    return result
