"""A change whose approvals or window ran out expires."""

from __future__ import annotations

from prefect import task
from prefect.runtime import flow_run

from itilflow.models import ChangeStatus, session_scope
from itilflow.runtime import runtime
from itilflow.services import changes


@task(name="expire-change")
def expire_change(change_id: int, version: int) -> None:
    """No decision within the policy's time: void the links and say so."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        if change.version != version or change.status != ChangeStatus.awaiting_approval:
            return
        this_run = flow_run.get_id()
        if this_run and change.flow_run_id not in (None, str(this_run)):
            return  # a recovery restarted the process: the new run owns the wait now
        changes.void_requests(session, change_id)
        changes.expire_change(
            session=session,
            change=change,
            actor="flow:change",
            note="no decision within the approval time; the links are void",
        )
