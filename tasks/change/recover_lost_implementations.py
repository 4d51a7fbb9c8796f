"""Start a recovery for each change whose implementing run ended without it, or is gone."""

from __future__ import annotations

from prefect import task
from sqlmodel import col, select

from itilflow.models import Change, session_scope
from itilflow.runtime import runtime
from itilflow.services import changes


@task(name="recover-lost-implementations")
async def recover_lost_implementations() -> int:
    """Start a recovery for each change still implementing (or marked crashed) whose run ended,
    or is gone: the safety net under the heartbeat and crash triggers of `recover-change` (an
    event missed while the Prefect server was down, a run deleted by hand)."""
    from uuid import UUID

    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    rt = runtime()
    with session_scope(rt.engine) as session:
        candidates = session.exec(
            select(Change).where(col(Change.status).in_(changes.MID_IMPLEMENTATION))
        ).all()
    lost = []
    async with get_client() as client:
        for change in candidates:
            if change.flow_run_id is None:
                continue
            try:
                run = await client.read_flow_run(UUID(change.flow_run_id))
            except ObjectNotFound:
                lost.append(change.flow_run_id)
                continue
            if run.state is not None and run.state.is_final():
                lost.append(change.flow_run_id)
    for run_id in lost:
        await run_deployment(
            "recover-change/recover-change", parameters={"flow_run": run_id}, timeout=0
        )
    return len(lost)
