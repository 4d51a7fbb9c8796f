"""Is a change's run really lost? No later heartbeat came: then it is marked Lost."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task

from itilflow import clock

LOST_STATE_NAME = "Lost"
"""A crashed-type state with its own name: its event (prefect.flow-run.Lost) does not fire the
Crashed trigger again for a run a recovery already handles."""


async def heartbeats(
    client: Any, run_id: str, *, since: str | None = None, limit: int = 1
) -> list[datetime]:
    """When the run's latest heartbeats (up to `limit`, newest first) reached the server, since
    `since` if given."""
    event_filter: dict[str, Any] = {
        "event": {"name": ["prefect.flow-run.heartbeat"]},
        "resource": {"id": [f"prefect.flow-run.{run_id}"]},
        "order": "DESC",
    }
    if since:
        event_filter["occurred"] = {"since": since, "until": clock.now().isoformat()}
    response = await client.request(
        "POST", "/events/filter", json={"filter": event_filter, "limit": limit}
    )
    return [datetime.fromisoformat(e["occurred"]) for e in response.json().get("events", [])]


@task(name="confirm-run-lost")
async def confirm_run_lost(flow_run_ref: str, last_heartbeat: str | None) -> str | None:
    """The lost run's id, or None when it is not lost after all.

    A run in a final state other than Completed is lost. A run the server still shows running
    or paused is lost only if no heartbeat came after `last_heartbeat` (the one the trigger saw
    last): a late heartbeat means a slow host, not a dead one. Such a run is marked crashed
    (state name "Lost") so the UI and every later check agree.
    """
    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    run_id = UUID(flow_run_ref.removeprefix("prefect.flow-run."))
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        state = run.state
        if state is not None and state.is_final():
            return None if state.type == StateType.COMPLETED else str(run_id)
        if last_heartbeat:
            later = [
                at
                for at in await heartbeats(client, str(run_id), since=last_heartbeat, limit=5)
                if at > datetime.fromisoformat(last_heartbeat)
            ]
            if later:
                return None
        await client.set_flow_run_state(
            run_id,
            Crashed(
                name=LOST_STATE_NAME,
                message="no heartbeat since "
                f"{last_heartbeat or 'its start'}: its worker or host is gone",
            ),
            force=True,
        )
        return str(run_id)
