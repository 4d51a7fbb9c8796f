"""Changes whose current stage went unanswered for the policy's `expire_after` expire."""

from __future__ import annotations

from prefect import task

from itilflow import clock
from itilflow.models import session_scope
from itilflow.runtime import runtime
from itilflow.services import changes
from itilflow.services.changes import waiting


@task(name="expire-unanswered-changes")
def expire_unanswered_changes() -> list[int]:
    """Void the links and expire each change whose stage waited `expire_after` since it was
    asked (no run waits with it: this scheduled check is its timer). The ids expired."""
    rt = runtime()
    expired = []
    with session_scope(rt.engine) as session:
        now = clock.now()
        for change in waiting.waiting_changes(session):
            state = waiting.state_of(session, change, rt.policies)
            if not waiting.is_overdue(session, change, state, rt.policies, now):
                continue
            assert change.id is not None
            changes.void_requests(session, change.id)
            changes.expire_change(
                session=session,
                change=change,
                actor="flow:remind-approvers",
                note="no decision within the approval time; the links are void",
            )
            expired.append(change.id)
    return expired
