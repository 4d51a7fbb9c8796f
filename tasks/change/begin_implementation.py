"""The implementation begins: the change is claimed for this run, its plan read."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.runtime import flow_run
from sqlmodel import col, select

from itilflow import clock
from itilflow.models import (
    Change,
    ChangeStatus,
    add_change_entry,
    session_scope,
)
from itilflow.runtime import runtime
from itilflow.services import changes


@task(name="begin-implementation")
def begin_implementation(change_id: int, version: int) -> dict[str, Any] | None:
    """The plan to run, or None when the change is not (or no longer) approved as this version."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        # Two runs that found the change approved at once: the row lock lets one implement it.
        session.execute(select(Change.id).where(col(Change.id) == change_id).with_for_update())
        change = changes.load_change(session, change_id)
        if change.version != version or change.status not in (
            ChangeStatus.approved,
            ChangeStatus.scheduled,
        ):
            add_change_entry(
                session=session,
                change_id=change_id,
                kind="implementation_skipped",
                actor="flow:implement-change",
                message=f"version {version} is not approved (now version {change.version}, "
                f"{change.status.value})",
            )
            return None
        change.status = ChangeStatus.implementing
        change.updated_at = clock.now()
        # This run now owns the change: a recovery takes it over only from this id.
        change.flow_run_id = str(flow_run.get_id() or "") or change.flow_run_id
        session.add(change)
        add_change_entry(
            session=session,
            change_id=change_id,
            kind="implementation_started",
            actor="flow:implement-change",
            message=f"{len(change.plan.get('steps', []))} steps",
        )
        return change.plan
