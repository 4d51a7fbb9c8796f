"""Someone holds SQLite's write lock past the busy timeout (a backup, a VACUUM, a sqlite shell):
the runner waits it out and goes on instead of exiting (which took `up`'s stack down with it)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from itilflow.dispatch.runner import Runner
from itilflow.models import FlowTrigger, count_claimable
from tests.flows.test_incident_flow import kinds, open_incident

pytestmark = pytest.mark.usefixtures("prefect_server")

LOCKED_SECONDS = 3.0
# The runner's connections give up on the lock after this (30 s in production): the lock
# outlasts it many times over without making the test wait 30 s.
BUSY_TIMEOUT_MS = 200


def due_triggers(rt) -> int:
    with Session(rt.engine) as session:
        return count_claimable(session=session)


def open_trigger_pending(rt, incident_id: int) -> bool:
    with Session(rt.engine) as session:
        trigger = session.exec(
            select(FlowTrigger).where(
                FlowTrigger.incident_id == incident_id, FlowTrigger.kind == "open"
            )
        ).one()
        return trigger.pending


async def test_the_runner_waits_out_a_locked_database_and_then_runs_what_is_due(
    client, rt, smtp_server, http_sink, caplog
):
    url = rt.settings.database_url
    if not url.startswith("sqlite"):
        pytest.skip("SQLite's write lock; PostgreSQL's outage is the engine-restart test's")
    incident = open_incident(client)

    @event.listens_for(rt.engine, "connect")
    def short_busy_timeout(connection, _record) -> None:
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    rt.engine.dispose()  # every connection from now on has the short timeout
    holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    caplog.set_level(logging.WARNING, logger="itilflow.dispatch.runner")
    stop = asyncio.Event()
    running = asyncio.create_task(Runner(rt.engine, poll_seconds=0.1).run(stop))
    try:
        await asyncio.sleep(LOCKED_SECONDS)
        assert not running.done(), running.exception() if running.done() else None
        holder.execute("ROLLBACK")
        holder.close()

        deadline = time.monotonic() + 120
        while due_triggers(rt) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=60)
        event.remove(rt.engine, "connect", short_busy_timeout)

    assert due_triggers(rt) == 0
    assert not open_trigger_pending(rt, incident["id"])
    assert "classified" in kinds(rt, incident["id"]) or "assigned" in kinds(rt, incident["id"])
    unavailable = [r.message for r in caplog.records if "database is unavailable" in r.message]
    assert unavailable, "the wait was logged"
    assert all("database is locked" in message for message in unavailable), unavailable
