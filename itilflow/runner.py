"""The runner: starts a flow run under the engine for every trigger that comes due.

Triggers are rows written by the gateway (a new incident), by actions (a resolution) and by the
SLA planner (deadlines and escalation steps). The runner claims due rows with a lease, runs the
matching flow in this process as an async flow run of the engine (tracked, retried and shown in
the Prefect UI like any other), and marks the row done only when the run completed. A failed run
leaves the row pending for a retry with back-off; a crashed runner's rows are taken back when it
starts again, or by any runner once their lease ends.

Why in this process and not as deployment runs: a deployment run starts as a subprocess that costs
about 1.5 core-seconds here, which would make a burst of alerts wait tens of seconds for their
first notification, and 1,000 deadlines due within minutes impossible to keep.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from itilflow import clock
from itilflow.flows.incident import incident_resolved, open_incident
from itilflow.flows.sla import fire_sla_timer
from itilflow.models import (
    FlowTrigger,
    add_timeline,
    claim_due_triggers,
    finish_trigger,
    release_claims,
    release_trigger,
    session_scope,
)

log = logging.getLogger("itilflow.runner")

LEASE = timedelta(minutes=10)
MAX_BACKOFF = timedelta(minutes=10)


def _flow_for(trigger: FlowTrigger) -> Callable[..., Coroutine[Any, Any, Any]]:
    if trigger.kind == "open":
        return lambda **kw: open_incident(incident_id=trigger.incident_id, **kw)
    if trigger.kind == "resolved":
        resolution = int(trigger.key.partition(":")[2] or 1)
        return lambda **kw: incident_resolved(
            incident_id=trigger.incident_id, resolution=resolution, **kw
        )
    return lambda **kw: fire_sla_timer(
        trigger_id=trigger.id, incident_id=trigger.incident_id, kind=trigger.kind, **kw
    )


def default_runner_name() -> str:
    return f"{socket.gethostname()}:runner"


class Runner:
    def __init__(
        self,
        engine: Engine,
        *,
        concurrency: int = 2,
        poll_seconds: float = 0.2,
        name: str | None = None,
    ) -> None:
        self.engine = engine
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.name = name or default_runner_name()
        self._running: set[asyncio.Task[None]] = set()
        self.completed = 0
        self.failed = 0

    def _claim(self, limit: int) -> list[FlowTrigger]:
        with Session(self.engine, expire_on_commit=False) as session:
            return claim_due_triggers(session=session, limit=limit, lease=LEASE, runner=self.name)

    async def run(self, stop: asyncio.Event) -> None:
        with session_scope(self.engine) as session:
            taken_back = release_claims(session=session, runner=self.name)
        if taken_back:
            log.info("took back %d triggers claimed before a restart", taken_back)
        while not stop.is_set():
            free = self.concurrency - len(self._running)
            claimed = await asyncio.to_thread(self._claim, free) if free > 0 else []
            for trigger in claimed:
                job = asyncio.create_task(self._run_one(trigger))
                self._running.add(job)
                job.add_done_callback(self._running.discard)
            if len(claimed) < free:
                # Nothing more is due now: wait a little, or until told to stop.
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.poll_seconds)
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(0)
        if self._running:
            log.info("waiting for %d flow runs to finish", len(self._running))
            await asyncio.wait(self._running, timeout=30)

    async def run_until_idle(self, timeout: float = 60.0) -> None:
        """Run until nothing is due or running (tests and one-shot use)."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.run(stop))
        deadline = asyncio.get_running_loop().time() + timeout
        idle_rounds = 0
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(self.poll_seconds)
            due = await asyncio.to_thread(self._due_count)
            idle_rounds = idle_rounds + 1 if not self._running and due == 0 else 0
            if idle_rounds >= 2:
                break
        stop.set()
        await task

    def _due_count(self) -> int:
        from sqlmodel import col, func, select

        now = clock.now()
        with Session(self.engine) as session:
            return session.exec(
                select(func.count())
                .select_from(FlowTrigger)
                .where(
                    col(FlowTrigger.done_at).is_(None),
                    col(FlowTrigger.cancelled_at).is_(None),
                    col(FlowTrigger.due_at) <= now,
                )
            ).one()

    async def _run_one(self, trigger: FlowTrigger) -> None:
        assert trigger.id is not None
        try:
            state = await _flow_for(trigger)(return_state=True)
        except Exception as exc:  # noqa: BLE001 (the engine itself failed: retry later)
            self._failed(trigger, f"{type(exc).__name__}: {exc}")
            return
        flow_run_id = str(state.state_details.flow_run_id or "") or None
        if state.is_completed():
            self.completed += 1
            await asyncio.to_thread(self._finish, trigger.id, flow_run_id)
        else:
            self._failed(trigger, state.message or state.type.value)

    def _finish(self, trigger_id: int, flow_run_id: str | None) -> None:
        with session_scope(self.engine) as session:
            finish_trigger(session=session, trigger_id=trigger_id, flow_run_id=flow_run_id)

    def _failed(self, trigger: FlowTrigger, error: str) -> None:
        self.failed += 1
        backoff = min(timedelta(seconds=5) * 2 ** min(trigger.attempts, 10), MAX_BACKOFF)
        log.warning(
            "trigger %s (%s) failed, retry in %s: %s", trigger.id, trigger.key, backoff, error
        )
        with session_scope(self.engine) as session:
            release_trigger(
                session=session,
                trigger_id=trigger.id or 0,
                error=error,
                retry_at=clock.now() + backoff,
            )
            if trigger.attempts == 1:
                add_timeline(
                    session=session,
                    incident_id=trigger.incident_id,
                    kind="flow_failed",
                    actor="runner",
                    message=f"{trigger.kind} flow failed, retrying in {backoff}: {error}",
                    data={"trigger": trigger.key},
                )


def require_api_url() -> None:
    """Without PREFECT_API_URL a process silently starts a temporary server of its own, whose
    runs nobody sees: refuse instead."""
    from prefect.settings import PREFECT_API_URL

    if not (PREFECT_API_URL.value() or os.environ.get("PREFECT_API_URL")):
        raise SystemExit(
            "PREFECT_API_URL is not set: start the stack with `itilflow up`, or point "
            "PREFECT_API_URL (or ITILFLOW_PREFECT_API_URL) at a Prefect server"
        )
