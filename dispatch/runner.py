"""The runner: starts flow runs under the engine for the triggers that come due.

Triggers are rows written by the gateway (a new incident), by actions (a resolution), by the
SLA planner (deadlines and escalation steps) and by notifications of any process kept for another
delivery. The runner claims due rows with a lease, groups them by kind into batches and runs one
flow per batch in this process, as an async flow run of the engine (tracked, retried and shown in
the Prefect UI like any other, tagged with every record it handles); it marks the rows done, with
the run's id, only when the run completed. A failed run leaves its rows pending for a retry with
back-off; a crashed runner's rows are taken back when it starts again, or by any runner once
their lease ends.

Why batches in this process, and not a deployment run per item: a deployment run starts as a
subprocess that costs about 1.5 core-seconds here, and even an in-process flow run costs the
engine 0.1-0.5 s with its task runs, so a burst of forty alerts or a thousand deadlines within
minutes cannot each have a run of their own (bench/alert_latency.py, bench/sla_timers.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from prefect import tags
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session

from itilflow import clock, metrics
from itilflow.dispatch.events import send_events_until
from itilflow.flows.callback import survey_callbacks
from itilflow.flows.incident import (
    Resolution,
    fire_sla_timers,
    incidents_resolved,
    open_incidents,
)
from itilflow.flows.notify import redeliver_notifications
from itilflow.models import (
    FlowTrigger,
    add_subject_entry,
    claim_due_triggers,
    count_claimable,
    finish_trigger,
    number_of,
    priority_of_rank,
    release_claims,
    release_trigger,
    renew_claims,
    session_scope,
)

log = logging.getLogger("itilflow.dispatch.runner")

# Short, and renewed while a batch runs: another runner takes over a dead one's claims within it.
LEASE = timedelta(seconds=20)
RENEW_EVERY = LEASE / 4
FIRST_BACKOFF = timedelta(seconds=2)
MAX_BACKOFF = timedelta(minutes=5)
# A database that cannot be reached or stays locked past SQLite's busy timeout (a backup, a
# VACUUM, a PostgreSQL restart) is waited out: a runner that exited on it took `up`'s whole stack
# down with it. Seconds between tries, doubling.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
DATABASE_RETRY_FIRST = 0.5
DATABASE_RETRY_MAX = 15.0
T = TypeVar("T")


# Under 100 records a batch: a run is tagged with each (run_tags), and Prefect 3.8.8's server
# answers 500 to a flow run whose event names 100 related resources or more, so a full batch of
# 100 incidents failed with "engine: ... 500" and waited out the back-off, again and again
# (bench/flood.py: a flood of 2,000 alerts had drained 1,400 after 10 minutes).
BATCH_SIZE = 80
# A trigger that failed this often runs alone, so that one that keeps failing (bad data, a bug)
# cannot hold back the others; failures of the engine itself (unreachable, restarting) don't count.
ALONE_AFTER_ATTEMPTS = 3
ENGINE_ERROR = "engine: "


# P1 and P2 work (opening, timers, escalations, kept messages) has a lane of its own, claimed
# before the others: a flow runs its batch stage by stage, so a P1 in a full batch of P4s
# would be notified only when all of them were assigned, and one waiting for its kind's lane
# would wait for the whole running batch (docs/scaling.md, bench/flood.py). Smaller batches, so
# that the first of a storm of P1s go out sooner; the other lanes take the rest, rank first.
URGENT_LANE = "urgent"
URGENT_RANK = 2
URGENT_BATCH_SIZE = 25


@dataclass
class Batch:
    flow: str  # "open", "resolved", "notify", "callback" or "timers"
    triggers: list[FlowTrigger]
    urgent: bool = False

    @property
    def lane(self) -> str:
        return URGENT_LANE if self.urgent else self.flow

    @property
    def trigger_ids(self) -> list[int]:
        return [trigger.id or 0 for trigger in self.triggers]


# Each flow is a lane with one batch at a time: new incidents never wait behind a batch of
# timers or of redeliveries, and two batches of one kind never compete for the engine (on a
# SQLite Prefect server concurrent runs meet its 503 "busy" and the client's 2-8 s back-off).
# "callback": the survey callbacks' calls and deadlines (flows/callback.py).
LANES = ("open", "resolved", "notify", "callback", "timers")  # "timers": every other kind


def _flow_of(trigger: FlowTrigger) -> str:
    return trigger.kind if trigger.kind in LANES else "timers"


def claim_filter(busy: set[str]) -> dict[str, list[str] | None] | None:
    """The kinds a runner may claim while the `busy` lanes run a batch; None: claim nothing."""
    named = [lane for lane in LANES if lane != "timers"]
    if "timers" in busy:
        free = [lane for lane in named if lane not in busy]
        return {"only_kinds": free, "skip_kinds": None} if free else None
    return {"only_kinds": None, "skip_kinds": [lane for lane in named if lane in busy]}


def make_batches(triggers: list[FlowTrigger], *, urgent: bool = False) -> list[Batch]:
    """One batch per kind of flow; a trigger that keeps failing in its own batch."""
    grouped: dict[str, list[FlowTrigger]] = {}
    alone: list[Batch] = []
    for trigger in triggers:
        failing = trigger.attempts >= ALONE_AFTER_ATTEMPTS and not (
            trigger.last_error or ""
        ).startswith(ENGINE_ERROR)
        if failing:
            alone.append(Batch(_flow_of(trigger), [trigger], urgent))
        else:
            grouped.setdefault(_flow_of(trigger), []).append(trigger)
    return [Batch(flow, items, urgent) for flow, items in grouped.items()] + alone


def run_tags(batch: Batch) -> list[str]:
    """A tag per record the batch handles ("incident:INC-000041", "change:CHG-000003"): one run
    handles many, and the Prefect UI's tag filter finds every run that handled one."""
    subjects = {trigger.subject for trigger in batch.triggers}
    return sorted(f"{subject.kind}:{number_of(subject)}" for subject in subjects)


async def _start(batch: Batch) -> Any:
    with tags(*run_tags(batch)):
        return await _flow_for(batch)


def _flow_for(batch: Batch) -> Coroutine[Any, Any, Any]:
    if batch.flow == "open":
        incident_ids = [trigger.incident_id for trigger in batch.triggers]
        return open_incidents(incident_ids=incident_ids, return_state=True)
    if batch.flow == "resolved":
        resolutions = [
            Resolution(
                incident_id=t.incident_id,
                resolution=int(t.key.partition(":")[2] or 1),
                priority=priority_of_rank(t.priority_rank),
            )
            for t in batch.triggers
        ]
        return incidents_resolved(resolutions=resolutions, return_state=True)
    if batch.flow == "notify":
        return redeliver_notifications(trigger_ids=batch.trigger_ids, return_state=True)
    if batch.flow == "callback":
        return survey_callbacks(trigger_ids=batch.trigger_ids, return_state=True)
    return fire_sla_timers(trigger_ids=batch.trigger_ids, return_state=True)


def default_runner_name() -> str:
    return f"{socket.gethostname()}:runner"


class Runner:
    def __init__(
        self,
        engine: Engine,
        *,
        concurrency: int = len(LANES),  # batches at once, the urgent lane's on top
        poll_seconds: float = 0.2,
        batch_size: int = BATCH_SIZE,
        urgent_batch_size: int = URGENT_BATCH_SIZE,
        name: str | None = None,
    ) -> None:
        self.engine = engine
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.urgent_batch_size = urgent_batch_size
        self.poll_seconds = poll_seconds
        self.name = name or default_runner_name()
        self._running: set[asyncio.Task[None]] = set()
        self._held: set[int] = set()  # triggers of the batches running now
        self._busy: dict[str, int] = {}  # lane -> batches running in it
        self.completed = 0
        self.failed = 0

    def _claim(self, limit: int) -> tuple[list[Batch], int]:
        """The batches to start now, and how many triggers the lanes of their kinds took (as
        many as `limit`: more may be due)."""
        busy = set(self._busy)
        kinds = claim_filter(busy)
        batches: list[Batch] = []
        claimed: list[FlowTrigger] = []
        with Session(self.engine, expire_on_commit=False) as session:
            if URGENT_LANE not in busy:
                urgent = claim_due_triggers(
                    session=session,
                    limit=self.urgent_batch_size,
                    lease=LEASE,
                    runner=self.name,
                    max_rank=URGENT_RANK,
                )
                batches += make_batches(urgent, urgent=True)
            if kinds is not None and limit > 0:
                # All ranks, the urgent first: a P1 the urgent lane could not take yet leads
                # its kind's batch.
                claimed = claim_due_triggers(
                    session=session, limit=limit, lease=LEASE, runner=self.name, **kinds
                )
        return batches + make_batches(claimed), len(claimed)

    def _release_own_claims(self) -> int:
        with session_scope(self.engine) as session:
            return release_claims(session=session, runner=self.name)

    async def _until_stored(self, what: str, write: Callable[[], T]) -> T:
        """`write` in a thread, tried again while the database is unavailable."""
        delay = DATABASE_RETRY_FIRST
        while True:
            try:
                return await asyncio.to_thread(write)
            except DATABASE_UNAVAILABLE as exc:
                _database_unavailable(what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, DATABASE_RETRY_MAX)

    async def run(self, stop: asyncio.Event) -> None:
        taken_back = await self._until_stored("take back earlier claims", self._release_own_claims)
        if taken_back:
            log.info("took back %d triggers claimed before a restart", taken_back)
        # The timeline's Prefect events go out beside the claims, never in their way, until
        # the last runs have finished and written their entries.
        runs_over = asyncio.Event()
        events = asyncio.create_task(send_events_until(runs_over, self.engine))
        try:
            await self._claim_and_run(stop)
        finally:
            runs_over.set()
            await events

    async def _claim_and_run(self, stop: asyncio.Event) -> None:
        renewed_at = asyncio.get_running_loop().time()
        claim_retry = DATABASE_RETRY_FIRST
        while not stop.is_set():
            metrics.RUNNER_POLL.set_to_current_time()
            if asyncio.get_running_loop().time() - renewed_at >= RENEW_EVERY.total_seconds():
                await asyncio.to_thread(self._renew)
                renewed_at = asyncio.get_running_loop().time()
            # The urgent lane does not count against the concurrency: a runner busy with a
            # flood still takes a P1.
            free = len(self._running) - self._busy.get(URGENT_LANE, 0) < self.concurrency
            limit = self.batch_size if free else 0
            try:
                batches, claimed = (
                    await asyncio.to_thread(self._claim, limit)
                    if free or URGENT_LANE not in self._busy
                    else ([], 0)
                )
            except DATABASE_UNAVAILABLE as exc:
                _database_unavailable("claim due triggers", exc, claim_retry)
                await _wait_or_stop(stop, claim_retry)
                claim_retry = min(claim_retry * 2, DATABASE_RETRY_MAX)
                continue
            claim_retry = DATABASE_RETRY_FIRST
            for batch in batches:
                self._launch(batch)
            if claimed < self.batch_size or not free:
                # Nothing more is due now, or no room: wait a little, for a run to end, or
                # until told to stop.
                waiters = {asyncio.ensure_future(stop.wait()), *self._running}
                _, pending = await asyncio.wait(
                    waiters, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED
                )
                for waiter in pending - self._running:
                    waiter.cancel()
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
        with Session(self.engine) as session:
            return count_claimable(session=session)

    def _renew(self) -> None:
        try:
            with session_scope(self.engine) as session:
                renew_claims(
                    session=session, trigger_ids=sorted(self._held), runner=self.name, lease=LEASE
                )
        except Exception:  # noqa: BLE001 (the next round tries again; the lease has slack)
            log.exception("could not renew the leases of %d running triggers", len(self._held))

    def _launch(self, batch: Batch) -> None:
        # Marked busy before the task first runs, so that the next claim already skips the lane.
        self._held |= set(batch.trigger_ids)
        self._busy[batch.lane] = self._busy.get(batch.lane, 0) + 1
        job = asyncio.create_task(self._run_batch(batch))
        self._running.add(job)
        job.add_done_callback(self._running.discard)

    async def _run_batch(self, batch: Batch) -> None:
        try:
            await self._run_and_settle(batch)
        finally:
            self._held -= set(batch.trigger_ids)
            self._busy[batch.lane] -= 1
            if not self._busy[batch.lane]:
                del self._busy[batch.lane]

    async def _run_and_settle(self, batch: Batch) -> None:
        try:
            state = await _start(batch)
        except Exception as exc:  # noqa: BLE001 (the engine itself failed: retry later)
            error = f"{ENGINE_ERROR}{type(exc).__name__}: {exc}"
            await self._until_stored("release failed triggers", lambda: self._failed(batch, error))
            _note(batch, "engine_error")
            return
        flow_run_id = str(state.state_details.flow_run_id or "") or None
        if state.is_completed():
            # Marked done however long the database takes: left claimed, they would run again.
            await self._until_stored("mark triggers done", lambda: self._finish(batch, flow_run_id))
            self.completed += len(batch.triggers)
            _note(batch, "completed")
        else:
            error = state.message or state.type.value
            await self._until_stored("release failed triggers", lambda: self._failed(batch, error))
            _note(batch, "failed")

    def _finish(self, batch: Batch, flow_run_id: str | None) -> None:
        with session_scope(self.engine) as session:
            for trigger_id in batch.trigger_ids:
                finish_trigger(session=session, trigger_id=trigger_id, flow_run_id=flow_run_id)

    def _failed(self, batch: Batch, error: str) -> None:
        with session_scope(self.engine) as session:
            for trigger in batch.triggers:
                attempt = max(trigger.attempts - 1, 0)
                backoff = min(FIRST_BACKOFF * 2 ** min(attempt, 10), MAX_BACKOFF)
                release_trigger(
                    session=session,
                    trigger_id=trigger.id or 0,
                    error=error,
                    retry_at=clock.now() + backoff,
                )
                if trigger.attempts == 1:
                    add_subject_entry(
                        session=session,
                        subject=trigger.subject,
                        kind="flow_failed",
                        actor="runner",
                        message=f"{batch.flow} flow failed, retrying in {backoff}: {error}",
                        data={"trigger": trigger.key},
                    )
        self.failed += len(batch.triggers)
        log.warning("%s flow for %d triggers failed: %s", batch.flow, len(batch.triggers), error)


def _note(batch: Batch, outcome: str) -> None:
    """The batch in the runner's metrics (itilflow/metrics.py)."""
    ranks = [trigger.priority_rank for trigger in batch.triggers]
    metrics.note_batch(batch.flow, batch.lane, outcome, ranks)


def _database_unavailable(what: str, exc: Exception, retry_in: float) -> None:
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    log.warning(
        "%s: the database is unavailable (%s); trying again in %.1f s", what, reason, retry_in
    )


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


def require_api_url() -> None:
    """Without PREFECT_API_URL a process silently starts a temporary server of its own, whose
    runs nobody sees: refuse instead."""
    from prefect.settings import PREFECT_API_URL

    if not (PREFECT_API_URL.value() or os.environ.get("PREFECT_API_URL")):
        raise SystemExit(
            "PREFECT_API_URL is not set: start the stack with `itilflow up`, or point "
            "PREFECT_API_URL (or ITILFLOW_PREFECT_API_URL) at a Prefect server"
        )
