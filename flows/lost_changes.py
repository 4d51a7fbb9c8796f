"""Changes whose run died mid-implementation, found by the runner at its start and every few
seconds after: the net under prefect.yaml's heartbeat trigger, which does not fire for a run
lost together with the Prefect server (a power cut leaves the run Running for good).

What each lost one's steps left running on this host is killed at once, then it gets a
`recover-change` run (which kills what is left on its own host, rolls back and says so on the
timeline); recorded step processes whose run no longer owns their change are killed too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from sqlmodel import col, select

from itilflow import clock
from itilflow.models import Change, ChangeStatus, session_scope
from itilflow.runtime import runtime
from itilflow.services import changes
from itilflow.tasks.change.confirm_run_lost import heartbeats
from itilflow.tasks.change.kill_lost_steps import kill_lost_steps, kill_orphan_steps

log = logging.getLogger("itilflow.recovery")

SWEEP_SECONDS = 10.0
# A recovery asked for is not asked again for this long (its run may wait for a worker).
ASKED_AGAIN_AFTER = 120.0


StartRecovery = Callable[[str, str | None, str], Awaitable[None]]
"""Starts the recovery of a lost run: (run id, its last sign of life, why it is lost)."""


class LostChangeSweeper:
    """Finds lost implementations and starts their recoveries, each once a while."""

    def __init__(self, start: StartRecovery | None = None) -> None:
        self._start = start or _start_recovery
        self._asked: dict[str, float] = {}  # lost run id -> when its recovery was asked for

    async def sweep(self) -> list[int]:
        """One look: the ids of the changes whose recovery was started now."""
        killed = await asyncio.to_thread(kill_orphan_steps)
        for described in killed:
            log.warning("killed an orphaned step: %s", described)
        candidates = await asyncio.to_thread(_implementing)
        if not candidates:
            return []
        started = []
        from prefect import get_client

        async with get_client() as client:
            for change_id, run_id, status in candidates:
                seen = await _run_seen(client, run_id)
                why = changes.why_lost(status, seen, clock.now())
                if why is None or not self._may_ask(run_id):
                    continue
                # Its steps are killed now, not when the recovery's run has started (a flow
                # run's process takes 10-40 s to start on a busy host): an orphan must not go
                # on changing the system meanwhile.
                await asyncio.to_thread(kill_lost_steps.fn, change_id, run_id, why=why)
                last = seen.last_seen.isoformat() if seen and seen.last_seen else None
                await self._start(run_id, last, f"found lost by the runner: {why}")
                log.warning(
                    "change %s: its run %s is lost (%s): recovering", change_id, run_id, why
                )
                started.append(change_id)
        return started

    def _may_ask(self, run_id: str) -> bool:
        now = time.monotonic()
        if now - self._asked.get(run_id, -ASKED_AGAIN_AFTER) < ASKED_AGAIN_AFTER:
            return False
        self._asked[run_id] = now
        return True


def _implementing() -> list[tuple[int, str, ChangeStatus]]:
    with session_scope(runtime().engine) as session:
        rows = session.exec(
            select(Change.id, Change.flow_run_id, Change.status).where(
                col(Change.status).in_(changes.MID_IMPLEMENTATION),
                col(Change.flow_run_id).is_not(None),
            )
        ).all()
    return [(int(change_id), str(run_id), status) for change_id, run_id, status in rows]


async def _run_seen(client: Any, run_id: str) -> changes.RunSeen | None:
    """The run's state and latest sign of life (heartbeat, state change, start); None: gone."""
    from prefect.exceptions import ObjectNotFound

    try:
        run = await client.read_flow_run(UUID(run_id))
    except (ObjectNotFound, ValueError):
        return None
    times = [t for t in (run.start_time, run.state.timestamp if run.state else None) if t]
    times += await heartbeats(client, run_id)
    state_type = run.state.type.value if run.state else "PENDING"
    return changes.RunSeen(state_type=state_type, last_seen=max(times, default=None))


async def _start_recovery(run_id: str, last_seen: str | None, why: str) -> None:
    from prefect.deployments import run_deployment

    parameters = {"flow_run": run_id, "last_heartbeat": last_seen, "why": why}
    await run_deployment("recover-change/recover-change", parameters=parameters, timeout=0)


async def watch_lost_changes(stop: asyncio.Event, every: float = SWEEP_SECONDS) -> None:
    """Sweep at once, then every `every` seconds until `stop`; a failed sweep (database or
    Prefect server unreachable) is logged and tried again at the next one."""
    sweeper = LostChangeSweeper()
    while not stop.is_set():
        try:
            await sweeper.sweep()
        except Exception as exc:  # the runner goes on; the next sweep tries again
            log.warning("looking for lost changes failed: %s: %s", type(exc).__name__, exc)
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
        except TimeoutError:
            pass
