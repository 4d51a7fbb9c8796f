"""After a crash, without the engine: what counts as a lost implementation run, and the step
process groups kept on disk, killed only while they are still the recorded ones.

The whole thing, with `itilflow up` killed mid-step: tests/faults/test_stack_crash_mid_step.py."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from itilflow.executors import ProcessLedger, ShellAction, arun_action
from itilflow.executors.processes import kill_group, recorded, still_running
from itilflow.models import ChangeStatus, get_change_timeline, session_scope
from itilflow.services import changes
from itilflow.services.changes import RunSeen, why_lost
from itilflow.tasks.change.kill_lost_steps import kill_orphan_steps, steps_folder
from tests.changes.test_change_recovery import new_change

PROJECT = Path(__file__).resolve().parent.parent.parent
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("status", "run", "lost"),
    [
        # Mid-implementation, the run silent past the timeout: lost (the power cut).
        (ChangeStatus.implementing, RunSeen("RUNNING", ago(46)), "no heartbeat"),
        (ChangeStatus.crashed, RunSeen("RUNNING", ago(300)), "no heartbeat"),
        (ChangeStatus.implementing, RunSeen("PENDING", ago(60)), "no heartbeat"),
        # A recent heartbeat: a slow run, not a dead one.
        (ChangeStatus.implementing, RunSeen("RUNNING", ago(44)), None),
        (ChangeStatus.implementing, RunSeen("RUNNING", ago(0)), None),
        # The run ended without closing the change, or is gone.
        (ChangeStatus.implementing, RunSeen("CRASHED", ago(1)), "ended (crashed)"),
        (ChangeStatus.crashed, RunSeen("FAILED", ago(1)), "ended (failed)"),
        (ChangeStatus.implementing, None, "gone"),
        # Not mid-implementation: never lost this way, however silent the run.
        (ChangeStatus.awaiting_approval, RunSeen("PAUSED", ago(3600)), None),
        (ChangeStatus.rolled_back, None, None),
        (ChangeStatus.successful, RunSeen("COMPLETED", ago(3600)), None),
    ],
)
def test_what_counts_as_a_lost_implementation_run(status, run, lost):
    why = why_lost(status, run, NOW)
    if lost is None:
        assert why is None
    else:
        assert why is not None and lost in why


def test_the_timeout_is_the_heartbeat_triggers():
    deployments = yaml.safe_load((PROJECT / "prefect.yaml").read_text())["deployments"]
    (recover,) = [d for d in deployments if d["name"] == "recover-change"]
    (proactive,) = [t for t in recover["triggers"] if t.get("posture") == "Proactive"]
    assert changes.HEARTBEAT_TIMEOUT == timedelta(seconds=proactive["within"])
    silent = RunSeen("RUNNING", ago(20))
    assert why_lost(ChangeStatus.implementing, silent, NOW, timedelta(seconds=10))


def group_with_a_child() -> subprocess.Popen[bytes]:
    """A shell in its own session with a child: the leader may go while the child lives on."""
    return subprocess.Popen(
        ["/bin/sh", "-c", "sleep 60 & wait"], start_new_session=True, stdin=subprocess.DEVNULL
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2] != "Z"


def test_a_recorded_group_is_killed_with_its_children_but_a_recycled_pid_never(tmp_path: Path):
    ledger = ProcessLedger(tmp_path, 7, "run-1", "step", "write b")
    shell = group_with_a_child()
    try:
        ledger.started(shell.pid)
        (record,) = recorded(tmp_path)
        assert record.pgid == shell.pid and record.change_id == 7 and record.name == "write b"
        assert still_running(record)

        # The same pid with another start time is another process: left alone.
        recycled = record.__class__(**{**record.__dict__, "start_ticks": record.start_ticks + 1})
        assert not still_running(recycled) and not kill_group(recycled)
        assert alive(shell.pid)
        # Another boot: nothing of that boot runs any more.
        assert not still_running(record.__class__(**{**record.__dict__, "boot_id": "other"}))

        assert kill_group(record)
        shell.wait(timeout=5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and still_running(record):
            time.sleep(0.05)
        assert not still_running(record), "the sleep of the group is gone too"
        ledger.ended(shell.pid)
        assert recorded(tmp_path) == []
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()


def test_a_group_whose_leader_died_still_counts_while_a_member_runs(tmp_path: Path):
    shell = group_with_a_child()
    try:
        ProcessLedger(tmp_path, 1, "run-1", "step", "s").started(shell.pid)
        (record,) = recorded(tmp_path)
        time.sleep(0.2)  # the sleep has started
        os.kill(shell.pid, signal.SIGKILL)
        shell.wait()
        assert still_running(record), "its sleep runs on in the group"
        assert kill_group(record)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and still_running(record):
            time.sleep(0.05)
        assert not still_running(record)
    finally:
        try:
            os.killpg(shell.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_shell_step_is_on_record_while_it_runs_and_forgotten_after(tmp_path: Path):
    ledger = ProcessLedger(tmp_path, 3, "run-9", "step", "slow")
    marker = tmp_path / "running"

    async def run() -> tuple[list, bool]:
        task = asyncio.create_task(
            arun_action(ShellAction(command=f"touch {marker}; sleep 1"), ledger=ledger)
        )
        while not marker.exists():
            await asyncio.sleep(0.05)
        during = recorded(tmp_path)
        result = await task
        return during, result.ok

    during, ok = asyncio.run(run())
    assert ok
    assert [(r.change_id, r.run_id, r.phase, r.name) for r in during] == [
        (3, "run-9", "step", "slow")
    ]
    assert recorded(tmp_path) == []


def test_the_runner_kills_steps_whose_run_no_longer_owns_the_change(rt):
    folder = steps_folder(rt)
    taken_over = new_change(rt, ChangeStatus.implementing, "recovery-run")
    owned = new_change(rt, ChangeStatus.implementing, "live-run")
    orphan, live = group_with_a_child(), group_with_a_child()
    try:
        ProcessLedger(folder, taken_over, "lost-run", "step", "write b").started(orphan.pid)
        ProcessLedger(folder, owned, "live-run", "step", "deploy").started(live.pid)

        killed = kill_orphan_steps(rt)

        assert len(killed) == 1 and "write b" in killed[0]
        assert orphan.wait(timeout=5) == -signal.SIGKILL
        assert live.poll() is None, "a step of a run that owns its change is left alone"
        assert [r.change_id for r in recorded(folder)] == [owned]
        with session_scope(rt.engine) as session:
            (entry,) = [
                e
                for e in get_change_timeline(session=session, change_id=taken_over)
                if e.kind == "step_processes_killed"
            ]
        assert "lost-run" in entry.message and "write b" in entry.message
        assert entry.data["killed"][0]["pgid"] == orphan.pid
    finally:
        for process in (orphan, live):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_the_runners_sweep_recovers_a_silent_or_vanished_run_once(rt, prefect_server):
    from uuid import uuid4

    from prefect import flow, get_client
    from prefect.states import Running

    from itilflow import clock
    from itilflow.flows.lost_changes import LostChangeSweeper

    @flow(name="stand-in-for-a-change-run")
    def stand_in() -> None: ...

    async def running_run() -> str:
        async with get_client() as client:
            run = await client.create_flow_run(stand_in)
            await client.set_flow_run_state(run.id, Running(), force=True)
            return str(run.id)

    silent_run = asyncio.run(running_run())
    gone_run = str(uuid4())
    silent = new_change(rt, ChangeStatus.implementing, silent_run)
    gone = new_change(rt, ChangeStatus.crashed, gone_run)
    new_change(rt, ChangeStatus.awaiting_approval, str(uuid4()))  # not this sweep's business
    asked: list[tuple[str, str | None, str]] = []

    async def start(run_id: str, last_seen: str | None, why: str) -> None:
        asked.append((run_id, last_seen, why))

    sweeper = LostChangeSweeper(start)
    assert asyncio.run(sweeper.sweep()) == [gone]  # the running one beat just now
    assert asked[0][0] == gone_run and "gone" in asked[0][2]

    orphan = group_with_a_child()  # what the silent run's step left running
    ProcessLedger(steps_folder(rt), silent, silent_run, "step", "deploy").started(orphan.pid)
    assert asyncio.run(sweeper.sweep()) == []  # still owned by its run, still beating: left alone
    assert orphan.poll() is None

    clock.freeze(clock.now() + timedelta(seconds=50))
    try:
        assert asyncio.run(sweeper.sweep()) == [silent]  # silent for 50 s; `gone` asked already
        assert orphan.wait(timeout=5) == -signal.SIGKILL, "killed as soon as found lost"
    finally:
        if orphan.poll() is None:
            os.killpg(orphan.pid, signal.SIGKILL)
            orphan.wait()
    with session_scope(rt.engine) as session:
        (entry,) = [
            e
            for e in get_change_timeline(session=session, change_id=silent)
            if e.kind == "step_processes_killed"
        ]
    assert entry.message.startswith("no heartbeat from its run for") and entry.actor == "runner"
    run_id, last_seen, why = asked[1]
    assert run_id == silent_run and "no heartbeat from its run for" in why
    assert last_seen is not None and "found lost by the runner" in why
    assert asyncio.run(sweeper.sweep()) == []


def test_a_step_that_cannot_be_put_on_record_is_stopped_and_fails(tmp_path: Path):
    not_a_folder = tmp_path / "steps"
    not_a_folder.write_text("a file where the records would go")
    marker = tmp_path / "finished"
    ledger = ProcessLedger(not_a_folder, 1, "run-1", "step", "s")

    started = time.monotonic()
    result = asyncio.run(
        arun_action(ShellAction(command=f"sleep 5; touch {marker}"), ledger=ledger)
    )

    assert not result.ok and "could not record its process group" in result.summary
    assert time.monotonic() - started < 4 and not marker.exists()
