"""Writers of one SQLite file, as the gateway, the worker and the runner write it: run in
threads of the test's process, or as a process of their own
(`python -m tests.faults.sqlite_writers ROLE DATABASE_URL THREADS WRITES STOP_FILE`), which
prints what it did as one JSON line.

- gateway: opens incidents (the incident, its `opened` entry and its `open` trigger)
- worker: comments on one shared incident (read, then write the same row)
- runner: claims due triggers and finishes them, until STOP_FILE exists and none is left
- holder: one process stalled inside a write transaction: it takes SQLite's write lock and
  keeps it for WRITES seconds (a backup, a stuck process), while the others go on
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlmodel import Session

from itilflow.models import (
    IncidentCreate,
    claim_due_triggers,
    finish_trigger,
    get_engine,
    session_scope,
)
from itilflow.policies import load_policies
from itilflow.services import incidents

SHARED_INCIDENT = 1
# A runner that finds nothing due waits this long before it claims again.
IDLE_PAUSE = 0.02


@dataclass
class Tally:
    """What the writers of one process did; `waits` are seconds per transaction."""

    attempted: int = 0
    stored: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    max_wait: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def note(self, started: float, stored: list[int], error: str | None = None) -> None:
        with self._lock:
            self.max_wait = max(self.max_wait, time.monotonic() - started)
            self.stored.extend(stored)
            if error:
                self.errors.append(error)

    def as_json(self) -> str:
        return json.dumps(
            {
                "attempted": self.attempted,
                "stored": self.stored,
                "errors": self.errors,
                "max_wait": self.max_wait,
            }
        )


def _write_each(
    database_url: str, writes: int, tally: Tally, write: Callable[[Session, int], int]
) -> None:
    """`writes` transactions, each timed and counted; `write` returns the id it stored."""
    engine = get_engine(database_url)
    for n in range(writes):
        started = time.monotonic()
        with tally._lock:
            tally.attempted += 1
        try:
            with session_scope(engine) as session:
                stored = write(session, n)
            tally.note(started, [stored])
        except Exception as exc:  # noqa: BLE001 (counted: the test says what failed)
            tally.note(started, [], repr(exc))


def open_incidents(database_url: str, writes: int, tally: Tally, name: str) -> None:
    policies = load_policies()

    def write(session: Session, n: int) -> int:
        incident, _ = incidents.open_incident(
            session=session,
            new=IncidentCreate(title=f"{name} #{n}", impact="low", urgency="low"),
            policies=policies,
            actor=name,
        )
        session.flush()
        assert incident.id is not None
        return incident.id

    _write_each(database_url, writes, tally, write)


def comment(database_url: str, writes: int, tally: Tally, name: str) -> None:
    policies = load_policies()

    def write(session: Session, n: int) -> int:
        incidents.apply_action(
            session,
            SHARED_INCIDENT,
            "comment",
            actor=name,
            note=f"{name} note {n}",
            policies=policies,
        )
        return n

    _write_each(database_url, writes, tally, write)


def run_triggers(database_url: str, stop_file: Path, tally: Tally, name: str) -> None:
    """Claim and finish due triggers; `stored` lists the trigger ids this runner finished."""
    engine = get_engine(database_url)
    deadline = time.monotonic() + 120  # bounded even if the stop file never comes
    while time.monotonic() < deadline:
        stopping = stop_file.exists()  # read before the claim: nothing due after it is final
        started = time.monotonic()
        try:
            with session_scope(engine) as session:
                claimed = claim_due_triggers(
                    session=session, limit=5, lease=timedelta(minutes=5), runner=name
                )
                ids = [trigger.id for trigger in claimed if trigger.id is not None]
            with session_scope(engine) as session:
                for trigger_id in ids:
                    finish_trigger(session=session, trigger_id=trigger_id, flow_run_id=None)
        except Exception as exc:  # noqa: BLE001
            tally.note(started, [], repr(exc))
            continue
        with tally._lock:
            tally.attempted += len(ids)
        tally.note(started, ids)
        if not ids:
            if stopping:
                return
            time.sleep(IDLE_PAUSE)


def hold_write_lock(database_url: str, seconds: float, tally: Tally) -> None:
    """Take the write lock with the plain driver (no queue of ours) and sit on it."""
    connection = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30)
    deadline = time.monotonic() + 60
    # Wait for the gateways' first incident (the shared one is there already), so that the
    # lock is taken while the others write.
    while connection.execute("SELECT count(*) FROM incident").fetchone()[0] < 2:
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    started = time.monotonic()
    try:
        connection.execute("BEGIN IMMEDIATE")
        time.sleep(seconds)
        connection.execute("COMMIT")
        with tally._lock:
            tally.attempted += 1
        tally.note(started, [1])
    except sqlite3.Error as exc:
        tally.note(started, [], repr(exc))
    finally:
        connection.close()


def run_role(
    role: str, database_url: str, threads: int, writes: int, stop_file: Path, tally: Tally
) -> None:
    """`threads` writers of `role` in this process, until each is done."""
    prefix = f"{role}-{os.getpid()}"

    def one(number: int) -> None:
        name = f"{prefix}-{number}"
        if role == "gateway":
            open_incidents(database_url, writes, tally, name)
        elif role == "worker":
            comment(database_url, writes, tally, name)
        elif role == "runner":
            run_triggers(database_url, stop_file, tally, name)
        elif role == "holder":
            hold_write_lock(database_url, writes, tally)
        else:
            raise ValueError(f"unknown role {role!r}")

    workers = [threading.Thread(target=one, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def main(argv: list[str]) -> None:
    role, database_url, threads, writes, stop_file = argv
    tally = Tally()
    run_role(role, database_url, int(threads), int(writes), Path(stop_file), tally)
    sys.stdout.write(tally.as_json() + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
