"""Fifty concurrent writers on one SQLite file, as threads of one process and as the separate
processes the gateway, the worker and the runner are (with one more process stalled inside a
write transaction for seconds): no write is lost, no trigger is claimed twice, and "database
is locked" never reaches a writer (models/db.py queues the transactions of a process; SQLite's
busy timeout arbitrates between processes)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, func, select

from itilflow.models import FlowTrigger, Incident, IncidentCreate, TimelineEntry, session_scope
from itilflow.services import incidents

from .sqlite_writers import SHARED_INCIDENT, Tally, run_role

REPOSITORY = Path(__file__).resolve().parents[2]
WRITES = 5
# role: (processes, threads per process); 20 + 20 + 10 = 50 writers.
LAYOUT = {"gateway": (2, 10), "worker": (2, 10), "runner": (2, 5)}
# A seventh process sits on the write lock this long while the fifty write.
LOCK_HELD_SECONDS = 3


def open_shared_incident(rt: Any) -> None:
    with session_scope(rt.engine) as session:
        incident, _ = incidents.open_incident(
            session=session,
            new=IncidentCreate(title="Shared incident"),
            policies=rt.policies,
            actor="test",
        )
    assert incident.id == SHARED_INCIDENT


def check_nothing_lost(rt: Any, tallies: dict[str, list[Tally]]) -> dict[str, Any]:
    """Compare what the writers say they stored with the database; returns the figures."""
    gateway = [i for t in tallies["gateway"] for i in t.stored]
    comments = sum(len(t.stored) for t in tallies["worker"])
    finished = [i for t in tallies["runner"] for i in t.stored]
    # The writers' waits; a lock holder's errors count too, its hold is no wait.
    every = [t for role, group in tallies.items() if role != "holder" for t in group]
    errors = [e for group in tallies.values() for t in group for e in t.errors]
    with Session(rt.engine) as session:
        stored_incidents = session.exec(select(func.count()).select_from(Incident)).one()
        stored_comments = session.exec(
            select(func.count())
            .select_from(TimelineEntry)
            .where(TimelineEntry.kind == "commented", TimelineEntry.incident_id == SHARED_INCIDENT)
        ).one()
        triggers = session.exec(select(FlowTrigger)).all()
    figures = {
        "writers": sum(p * t for p, t in LAYOUT.values()),
        "attempted": sum(t.attempted for t in tallies["gateway"] + tallies["worker"]),
        "stored": (stored_incidents - 1) + stored_comments,
        "triggers_finished": f"{len(finished)}/{len(triggers)}",
        "errors": len(errors),
        "max_wait_s": round(max(t.max_wait for t in every), 2),
    }
    assert not errors, errors[:5]
    assert len(set(gateway)) == len(gateway) == sum(t.attempted for t in tallies["gateway"])
    assert stored_incidents == 1 + len(gateway)
    assert stored_comments == comments == sum(t.attempted for t in tallies["worker"])
    # Every trigger finished, each by exactly one runner.
    assert sorted(finished) == sorted(t.id for t in triggers), "a trigger claimed twice or never"
    if "holder" in tallies:  # it did get the lock, and held it while the others wrote
        assert [t.stored for t in tallies["holder"]] == [[1]]
    assert all(t.done_at is not None for t in triggers)
    return figures


def test_fifty_writer_threads_lose_nothing(rt: Any, tmp_path: Path, fault_figures: Any) -> None:
    open_shared_incident(rt)
    url = rt.settings.database_url
    stop_file = tmp_path / "stop"
    tallies = {role: [Tally()] for role in LAYOUT}
    started = time.monotonic()
    threads = [
        threading.Thread(
            target=run_role,
            args=(role, url, processes * per_process, WRITES, stop_file, tallies[role][0]),
        )
        for role, (processes, per_process) in LAYOUT.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads[:2]:  # the gateway and the worker write a fixed number
        thread.join(timeout=120)
    stop_file.touch()
    threads[2].join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    figures = check_nothing_lost(rt, tallies)
    fault_figures(
        "sqlite, 50 writer threads", **figures, seconds=round(time.monotonic() - started, 1)
    )


def test_fifty_writers_in_seven_processes_lose_nothing_while_one_holds_the_lock(
    rt: Any, tmp_path: Path, fault_figures: Any
) -> None:
    open_shared_incident(rt)
    url = rt.settings.database_url
    assert url is not None and url.startswith("sqlite")
    stop_file = tmp_path / "stop"
    started = time.monotonic()

    def start(role: str, threads: int, writes: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.faults.sqlite_writers", role, url]
            + [str(threads), str(writes), str(stop_file)],
            cwd=REPOSITORY,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    processes = {
        role: [start(role, threads, WRITES) for _ in range(count)]
        for role, (count, threads) in LAYOUT.items()
    }
    processes["holder"] = [start("holder", 1, LOCK_HELD_SECONDS)]
    outputs: dict[str, list[tuple[str, str]]] = {}
    try:
        for role in ("gateway", "worker", "holder"):
            outputs[role] = [p.communicate(timeout=120) for p in processes[role]]
        stop_file.touch()
        outputs["runner"] = [p.communicate(timeout=120) for p in processes["runner"]]
    finally:
        for process in (p for group in processes.values() for p in group):
            if process.poll() is None:
                process.kill()
                process.wait()
    tallies: dict[str, list[Tally]] = {}
    for role, results in outputs.items():
        for process, (stdout, stderr) in zip(processes[role], results, strict=True):
            assert process.returncode == 0, stderr
            values = json.loads(stdout.strip().splitlines()[-1])
            tallies.setdefault(role, []).append(Tally(**values))
    figures = check_nothing_lost(rt, tallies)
    with Session(rt.engine) as session:
        # The gateways' incidents came from two processes, interleaved.
        names = session.exec(select(Incident.title).where(col(Incident.id) > 1)).all()
        assert len({name.split("-")[1] for name in names}) == LAYOUT["gateway"][0]
    fault_figures(
        "sqlite, 50 writers in 7 processes",
        **figures,
        lock_held_s=LOCK_HELD_SECONDS,
        seconds=round(time.monotonic() - started, 1),
    )
