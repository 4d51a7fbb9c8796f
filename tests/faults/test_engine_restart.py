"""The Prefect server dies while SLA timers are pending, and comes back: every escalation
fires once, late by about the outage, none early, none missed."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlmodel import Session, select

from itilflow import clock
from itilflow.dispatch.runner import Runner
from itilflow.models import FlowTrigger, TimelineEntry, add_trigger, session_scope
from tests.support.prefect_server import PrefectServerProcess

TIMERS = 20


def seed_escalations(rt, incident_ids: list[int], first_in: float, spread: float) -> None:
    # One extra step per incident: the planner cancels steps it did not plan when it brings an
    # incident's timers in line after one fires.
    start = clock.now() + timedelta(seconds=first_in)
    with session_scope(rt.engine) as session:
        for n, incident_id in enumerate(incident_ids):
            add_trigger(
                session=session,
                incident_id=incident_id,
                kind="escalation",
                key=f"escalation:fault:{n}",
                due_at=start + timedelta(seconds=spread * n / (TIMERS - 1)),
                data={"step": 0, "repeat": n, "notify": "on_call"},
            )


def fired(rt) -> list[TimelineEntry]:
    with Session(rt.engine) as session:
        return list(session.exec(select(TimelineEntry).where(TimelineEntry.kind == "escalated")))


def pending_fault_timers(rt) -> int:
    with Session(rt.engine) as session:
        triggers = session.exec(
            select(FlowTrigger).where(FlowTrigger.key.startswith("escalation:fault:"))
        ).all()
        return sum(1 for trigger in triggers if trigger.pending)


async def test_timers_pending_through_a_prefect_server_restart_all_fire_once(
    client, rt, smtp_server, http_sink, tmp_path: Path, fault_figures
):
    server = PrefectServerProcess(tmp_path / "prefect")
    startup = await asyncio.to_thread(server.start)
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            incident_ids = [
                client.post(
                    "/api/incidents",
                    json={"title": f"switch {n} down", "impact": "low", "urgency": "low"},
                ).json()["id"]
                for n in range(TIMERS)
            ]
            runner = Runner(rt.engine, poll_seconds=0.1)
            await runner.run_until_idle(timeout=120)

            # Deadlines from 3 s on; the server dies at once and is back after its restart.
            seed_escalations(rt, incident_ids, first_in=3, spread=10)
            stop = asyncio.Event()
            running = asyncio.create_task(runner.run(stop))
            down_at = time.monotonic()
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(8)
            restart = await asyncio.to_thread(server.start)
            outage = time.monotonic() - down_at
            deadline = time.monotonic() + 180
            while pending_fault_timers(rt) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            stop.set()
            await running
    finally:
        server.stop()

    entries = [entry for entry in fired(rt) if entry.data["key"].startswith("escalation:fault:")]
    keys = [entry.data["key"] for entry in entries]
    lateness = sorted(entry.data["late_seconds"] for entry in entries)
    fault_figures(
        "prefect server restarted, timers pending",
        timers=TIMERS,
        fired=len(set(keys)),
        twice=len(keys) - len(set(keys)),
        early=sum(1 for late in lateness if late < 0),
        late_max_s=round(lateness[-1], 1) if lateness else None,
        outage_s=round(outage, 1),
        server_startup_s=round(restart, 1),
        first_startup_s=round(startup, 1),
    )
    assert pending_fault_timers(rt) == 0, "no escalation missed"
    assert len(keys) == len(set(keys)) == TIMERS, "each fired exactly once"
    assert lateness[0] >= 0, "none fired early"
