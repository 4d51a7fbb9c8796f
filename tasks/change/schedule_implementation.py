"""The implementation is scheduled for the change's window."""

from __future__ import annotations

from datetime import datetime

from prefect import task

from itilflow.models import (
    ChangeStatus,
    add_change_entry,
    session_scope,
)
from itilflow.runtime import runtime
from itilflow.services import changes


@task(name="schedule-implementation")
async def schedule_implementation(change_id: int, version: int, at: str) -> str:
    """A run of the implement-change deployment, scheduled by the engine for the window."""
    from prefect.deployments import run_deployment

    run = await run_deployment(
        "implement-change/implement-change",
        parameters={"change_id": change_id, "version": version},
        scheduled_time=datetime.fromisoformat(at),
        timeout=0,
    )
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        change.status = ChangeStatus.scheduled
        session.add(change)
        add_change_entry(
            session=session,
            change_id=change_id,
            kind="scheduled",
            actor="flow:change",
            message=f"implementation scheduled for {at}",
            data={"flow_run_id": str(run.id)},
        )
    return str(run.id)
