"""A change's run begins: the change is claimed for this run."""

from __future__ import annotations

from prefect import task
from prefect.runtime import flow_run

from itilflow.models import (
    ChangeStatus,
    add_change_entry,
    session_scope,
)
from itilflow.runtime import runtime
from itilflow.services import changes


@task(name="begin-change")
def begin_change(change_id: int) -> int | None:
    """Tie the change to this run; None when there is nothing left to do for it."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        if change.status not in (ChangeStatus.submitted, ChangeStatus.awaiting_approval):
            return None
        change.flow_run_id = str(flow_run.get_id() or "") or None
        session.add(change)
        add_change_entry(
            session=session,
            change_id=change_id,
            kind="process_started",
            actor="flow:change",
            message=f"version {change.version}",
            data={"flow_run_id": change.flow_run_id, "version": change.version},
        )
        return change.version
