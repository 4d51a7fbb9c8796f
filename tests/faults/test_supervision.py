"""`itilflow up` keeps its children running (issue 13): a child that dies is started again with
back-off, said on `up`'s stderr with its exit code and traceback, the others untouched; a crash
loop is said loudly; a stop never races a restart.

The first tests drive a `Stack` in-process with small stand-in children (fast); the last one
runs the real Prefect server, worker, runner and gateway of a stack (no deployments: what is
tested is the processes), kills them with SIGKILL and sees them back and serving."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from itilflow.models import FlowTrigger
from itilflow.settings import Settings
from itilflow.stack import Stack
from itilflow.supervision import CRASH_LOOP, MAX_DELAY, Backoff
from tests.conftest import make_settings
from tests.support.smtp import free_port
from tests.support.stack import wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(make_settings(tmp_path / "data"))
    yield stack
    stack.stop()


def watching(stack: Stack) -> tuple[list[str], threading.Event, threading.Thread]:
    """`stack.watch` in a thread, as `up` runs it; what it says, and how to stop it."""
    said: list[str] = []
    stop = threading.Event()
    thread = threading.Thread(target=stack.watch, args=(said.append, stop), daemon=True)
    thread.start()
    return said, stop, thread


def test_back_off_doubles_to_a_minute_and_starts_over_after_a_stable_run():
    backoff = Backoff()
    delays = [backoff.after_exit(uptime=2.0) for _ in range(9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff.crash_loop
    assert backoff.after_exit(uptime=backoff.stable_after + 1) == 1
    assert not backoff.crash_loop
    assert backoff.restarts == 10


def test_a_killed_child_is_started_again_and_the_others_keep_running(stack: Stack):
    runner = stack.start("runner", SLEEPER)
    gateway = stack.start("gateway", SLEEPER)
    first_pid, gateway_pid = runner.process.pid, gateway.process.pid
    said, stop, thread = watching(stack)
    try:
        os.kill(first_pid, signal.SIGKILL)
        wait_until(lambda: runner.process.pid != first_pid, timeout=20, what="a restart")
        assert runner.process.poll() is None
        assert gateway.process.pid == gateway_pid and gateway.process.poll() is None
    finally:
        stop.set()
        thread.join(timeout=10)
    assert said[0] == (
        f"runner exited with -9; see {runner.log}; restarting it in 1 s (restart 1)"
    ), said
    assert said[1] == f"runner started again (pid {runner.process.pid})"


def test_a_traceback_is_named_and_a_crash_loop_is_said_loudly_and_kept_trying(stack: Stack):
    crash = [sys.executable, "-c", "raise ConnectionRefusedError('smtp down')"]
    child = stack.start("runner", crash)
    child.backoff = Backoff(first=0.01, most=0.05)  # a minute's worth of crashes in a second
    said: list[str] = []
    deadline = time.monotonic() + 60
    while child.backoff.restarts < CRASH_LOOP + 1 and time.monotonic() < deadline:
        stack.supervise(said.append)
        time.sleep(0.02)
    exits = [line for line in said if " exited with 1" in line]
    assert len(exits) == CRASH_LOOP + 1, said
    assert all("after a traceback (ConnectionRefusedError: smtp down)" in line for line in exits)
    assert "CRASH LOOP" not in exits[CRASH_LOOP - 2]
    assert exits[CRASH_LOOP - 1].endswith(
        f"CRASH LOOP: runner exited {CRASH_LOOP} times in a row within "
        f"{child.backoff.stable_after:.0f} s of starting, fix the cause "
        "(up keeps trying every 0 s at most)"
    )
    assert "CRASH LOOP" in exits[CRASH_LOOP]  # said again on every exit, never silent
    assert MAX_DELAY == 60


def test_up_says_each_stage_as_it_starts_and_when_it_is_ready(stack: Stack):
    said: list[str] = []
    stack.say = said.append
    assert stack.stage("prefect server", lambda: 42) == 42
    stack.stage("runner", lambda: stack.start("runner", SLEEPER), waits=False)
    assert said[0:2] == ["prefect server ... ", said[1]]
    assert re.fullmatch(r"ready in \d+\.\d s\n", said[1])
    assert said[2:] == ["runner ... ", "started\n"]


def test_a_stop_signal_during_a_restart_stops_the_restarted_child_too(stack: Stack):
    """SIGTERM landing between a child's start and its place in the stack: the handler waits
    for it to be registered, so stop() stops it and no process is left behind."""
    child = stack.start("runner", SLEEPER)
    os.kill(child.process.pid, signal.SIGKILL)
    child.process.wait()
    popen = stack._popen

    def popen_then_signal(*args, **kwargs):
        started = popen(*args, **kwargs)
        stack.interrupt()  # as the SIGTERM handler `up` installs would, mid-restart
        return started

    stack._popen = popen_then_signal  # type: ignore[method-assign]
    child.restart_at = None
    child.exited(time.monotonic())
    child.restart_at = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        stack.supervise(lambda line: None)
    restarted = child.process
    assert restarted.poll() is None and child in stack.children
    stack.stop()
    assert restarted.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(restarted.pid, 0)


# The real parts: SIGKILL each, see it back; restart the Prefect server under the others.


@pytest.fixture
def real_stack(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    settings.prefect_port = free_port()
    settings.gateway_port = free_port()
    # As `up` has it: the children read the gateway's port from the environment it inherits.
    monkeypatch.setenv("ITILFLOW_GATEWAY_PORT", str(settings.gateway_port))
    settings.public_url = f"http://127.0.0.1:{settings.gateway_port}"
    stack = Stack(settings)
    itilflow = [sys.executable, "-m", "itilflow.cli"]
    try:
        stack.start_prefect_server()
        stack.start_worker(1)
        stack.start("runner", [*itilflow, "runner"])
        stack.start_gateway([*itilflow, "gateway"])
        yield stack
    finally:
        stack.stop()


def maps_uvloop(pid: int) -> bool:
    return "/uvloop/" in Path(f"/proc/{pid}/maps").read_text()


def pids(stack: Stack) -> dict[str, int]:
    return {child.name: child.process.pid for child in stack.children}


def open_incident(stack: Stack) -> int:
    settings = stack.settings
    assert settings.api_token is not None
    answer = httpx.post(
        f"{settings.public_url}/api/incidents",
        headers={"Authorization": f"Bearer {settings.api_token.get_secret_value()}"},
        json={
            "title": "Disk full on db-1",
            "category": "software",
            "impact": "high",
            "urgency": "high",
            "reporter_email": "owner@example.com",
        },
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def claimed(stack: Stack, incident_id: int) -> bool:
    """The runner took the incident's trigger (here it cannot start the flow: no deployments,
    so it counts a failed try and schedules the next)."""
    from itilflow.models import get_engine

    with Session(get_engine(stack.settings.database_url or "")) as session:
        trigger = session.exec(
            select(FlowTrigger).where(FlowTrigger.incident_id == incident_id)
        ).first()
        if trigger is None:
            return False
        return trigger.claimed_by is not None or trigger.attempts > 0 or not trigger.pending


def polled_since(stack: Stack, moment: float) -> bool:
    """The worker asked the (restarted) Prefect server for runs after `moment` (epoch s)."""
    from datetime import datetime

    pool = stack.settings.work_pool
    with httpx.Client(
        base_url=stack.api_url, auth=stack.settings.prefect_basic_auth, timeout=10
    ) as api:
        try:
            found = api.get(f"/work_pools/{pool}/queues/default")
        except httpx.HTTPError:
            return False
    polled = found.json().get("last_polled") if found.status_code == 200 else None
    return polled is not None and datetime.fromisoformat(polled).timestamp() > moment


@pytest.mark.postgres
def test_killed_runner_gateway_and_prefect_server_come_back_serving(real_stack: Stack):
    stack, settings = real_stack, real_stack.settings
    said, stop, thread = watching(stack)
    try:
        before = pids(stack)
        before_killed = ("runner", "gateway")
        for name in before_killed:
            os.kill(before[name], signal.SIGKILL)
        wait_until(
            lambda: all(
                f"{name} started again" in " ".join(said) for name in ("runner", "gateway")
            ),
            timeout=30,
            what="the runner and the gateway restarted",
        )
        stack.wait_for(f"{settings.public_url}/health", None, timeout=60)
        incident = open_incident(stack)
        wait_until(lambda: claimed(stack, incident), timeout=60, what="the runner serving")
        after = pids(stack)
        assert after["prefect-server"] == before["prefect-server"]
        assert after["worker"] == before["worker"]

        killed_at = time.time()
        os.kill(before["prefect-server"], signal.SIGKILL)
        wait_until(lambda: "prefect-server started again" in " ".join(said), timeout=30)
        stack.wait_for(f"{stack.api_url}/health", None, timeout=120)
        wait_until(lambda: polled_since(stack, killed_at), timeout=90, what="the worker polling")
        assert {name: pid for name, pid in pids(stack).items() if name != "prefect-server"} == {
            name: pid for name, pid in after.items() if name != "prefect-server"
        }, said
        assert all(child.process.poll() is None for child in stack.children), said
        # Issue 13 item 8: uvloop in the gateway alone, not in the Prefect server.
        assert maps_uvloop(pids(stack)["gateway"])
        assert not maps_uvloop(pids(stack)["prefect-server"])
    finally:
        stop.set()
        thread.join(timeout=10)
    exits = [line for line in said if " exited with " in line]
    assert sorted(line.split(" ")[0] for line in exits) == ["gateway", "prefect-server", "runner"]
