"""Start a run for each waiting change that needs one and has none: stored while the engine
was down, or decided while nothing ran (the gateway died between storing a decision and
starting the run)."""

from __future__ import annotations

from datetime import timedelta

from prefect import task

from itilflow import clock
from itilflow.models import add_change_entry, session_scope
from itilflow.runtime import runtime
from itilflow.services.changes import waiting


@task(name="start-waiting-changes")
async def start_waiting_changes(older_than: timedelta = timedelta(minutes=1)) -> int:
    """Start a run for each change that needs one (its rows say so) and whose last run ended.
    A change that waits for people needs none: waiting costs rows, not a process."""
    from uuid import UUID

    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    from itilflow.engine import PrefectChangeEngine

    rt = runtime()
    needing: list[tuple[int, str | None, str]] = []
    with session_scope(rt.engine) as session:
        for change in waiting.waiting_changes(session):
            if change.updated_at > clock.now() - older_than:
                continue  # its run may be starting now
            why = waiting.why_it_needs_a_run(change, waiting.state_of(session, change, rt.policies))
            if why is not None and change.id is not None:
                needing.append((change.id, change.flow_run_id, why))
    orphans = []
    async with get_client() as client:
        for change_id, run_id, why in needing:
            if run_id is not None:
                try:
                    run = await client.read_flow_run(UUID(run_id))
                except ObjectNotFound:
                    run = None
                if run is not None and (run.state is None or not run.state.is_final()):
                    continue  # a live run carries it on
            orphans.append((change_id, why))
    engine = PrefectChangeEngine()
    for change_id, why in orphans:
        with session_scope(rt.engine) as session:
            add_change_entry(
                session=session,
                change_id=change_id,
                kind="process_restarted",
                actor="flow:remind-approvers",
                message=f"no live run for this change ({why}): starting one",
            )
        await engine.start(change_id)
    return len(orphans)
