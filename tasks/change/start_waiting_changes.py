"""Start a run for each change that has none (stored while the engine was down, or whose
paused run died with its worker)."""

from __future__ import annotations

from datetime import timedelta

from prefect import task
from sqlmodel import col, select

from itilflow import clock
from itilflow.models import Change, ChangeStatus, add_change_entry, session_scope
from itilflow.runtime import runtime


@task(name="start-waiting-changes")
async def start_waiting_changes(older_than: timedelta = timedelta(minutes=1)) -> int:
    """Start a run for each change that has none: stored while the engine was down, or whose
    paused run died with its worker (a paused run lives in its worker's process)."""
    from uuid import UUID

    from prefect import get_client

    from itilflow.engine import PrefectChangeEngine

    rt = runtime()
    with session_scope(rt.engine) as session:
        candidates = session.exec(
            select(Change).where(
                col(Change.status).in_((ChangeStatus.submitted, ChangeStatus.awaiting_approval)),
                Change.updated_at <= clock.now() - older_than,
            )
        ).all()
    orphans = []
    async with get_client() as client:
        for change in candidates:
            if change.flow_run_id is None:
                orphans.append(change)
                continue
            run = await client.read_flow_run(UUID(change.flow_run_id))
            if run.state is not None and run.state.is_final():
                orphans.append(change)
    engine = PrefectChangeEngine()
    for change in orphans:
        assert change.id is not None
        with session_scope(rt.engine) as session:
            add_change_entry(
                session=session,
                change_id=change.id,
                kind="process_restarted",
                actor="flow:remind-approvers",
                message="no live run for this change: starting one",
            )
        await engine.start(change.id)
    return len(orphans)
