"""The whole stack dies mid-step, as in a power cut that spares one process: every process of
`itilflow up` is SIGKILLed (each child's process group, the flow run's included) while a change's
step sleeps in its own session, which runs on as an orphan. A second `up` on the same data folder
finds the change within 60 s of coming up, kills the orphan (its process group was kept on disk),
rolls the change back and says so on the timeline; nothing of the first stack is left.

Before this, the change stayed `implementing` for good and the orphan finished its work: the
heartbeat trigger does not fire for a run lost with the Prefect server, and the scheduled net
(`remind-approvers`) only looked at runs in a final state.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from itilflow.executors.processes import start_ticks
from itilflow.models import get_change_timeline, session_scope
from itilflow.runtime import Runtime
from tests.faults.test_workers import approved_change, status, wait_for
from tests.support.smtp import free_port
from tests.support.stack import prefect_auth, start_up


def slow_plan(system: Path) -> dict[str, Any]:
    a, b, pid = system / "a.txt", system / "b.txt", system / "b.pid"
    return {
        "steps": [
            {
                "name": "write a",
                "do": {"kind": "shell", "command": f"echo a > {a}"},
                "undo": {"kind": "shell", "command": f"rm -f {a}"},
            },
            {
                # Its shell says who it is, writes half, and would finish long after the crash.
                "name": "write b",
                "do": {
                    "kind": "shell",
                    "command": f"echo $$ > {pid}; echo half > {b}; sleep 300; echo full >> {b}",
                    "timeout": 600,
                },
                "undo": {"kind": "shell", "command": f"rm -f {b}"},
            },
        ],
        "rollback_verify": [
            {"name": "no files left", "do": {"kind": "shell", "command": f"test ! -e {a}"}}
        ],
    }


def proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the name: [0] state, [1] ppid, [2] pgrp; None: no process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def alive(pid: int, ticks: int | None = None) -> bool:
    stat = proc_stat(pid)
    if stat is None or stat[0] == "Z":
        return False
    return ticks is None or start_ticks(pid) == ticks


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := proc_stat(int(entry.name))):
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def power_cut(up: subprocess.Popen[str], spare_group: int | None = None) -> dict[int, int]:
    """SIGKILL `up` and every process under it but the group `spare_group`: stopped first, so
    that none starts another meanwhile, then killed group by group. Returns pid -> start ticks
    of what was killed."""
    os.kill(up.pid, signal.SIGSTOP)
    stopped: dict[int, int] = {up.pid: start_ticks(up.pid) or 0}
    while fresh := {
        p
        for p in descendants(up.pid) - set(stopped)
        if (s := proc_stat(p)) and int(s[2]) != spare_group
    }:
        for pid in fresh:
            stopped[pid] = start_ticks(pid) or 0
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
    own_group = os.getpgid(0)
    groups = {int(s[2]) for p in stopped if (s := proc_stat(p))} - {own_group, spare_group}
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in stopped:  # any straggler
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    up.wait(timeout=10)
    return stopped


def create_implementation_run(prefect_api: str, auth: httpx.Auth, change_id: int) -> str:
    """The change's implementation run, as its window would start it; asked again while the
    Prefect server's SQLite answers 503 (database locked) right after its start."""
    with httpx.Client(base_url=prefect_api, auth=auth, timeout=30) as api:
        deployment = api.get("/deployments/name/implement-change/implement-change")
        deployment.raise_for_status()

        def create() -> httpx.Response | None:
            run = api.post(
                f"/deployments/{deployment.json()['id']}/create_flow_run",
                json={"parameters": {"change_id": change_id, "version": 1}},
            )
            return None if run.status_code == 503 else run.raise_for_status()

        return str(wait_for("the implementation run", create, timeout=60).json()["id"])


def stack_env(rt: Runtime, smtp_port: int, database_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ITILFLOW_", "PREFECT_"))}
    assert rt.settings.database_url
    env.update(
        database_env,
        ITILFLOW_DATABASE_URL=rt.settings.database_url,  # the test's database: rt reads it
        ITILFLOW_API_TOKEN=secrets.token_urlsafe(32),
        ITILFLOW_SECRET_KEY=secrets.token_urlsafe(32),
        ITILFLOW_PREFECT_PORT=str(free_port()),
        ITILFLOW_GATEWAY_PORT=str(free_port()),
        ITILFLOW_SMTP_PORT=str(smtp_port),
        ITILFLOW_WORKERS="1",
    )
    return env


@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_a_stack_killed_mid_step_comes_back_kills_the_orphan_and_rolls_back(
    rt: Runtime, smtp_server, stack_database_env: dict[str, str], tmp_path: Path, fault_figures
):
    data, system = tmp_path / "data", tmp_path / "system"
    system.mkdir()
    env = stack_env(rt, smtp_server.port, stack_database_env)
    prefect_api = f"http://127.0.0.1:{env['ITILFLOW_PREFECT_PORT']}/api"
    change_id = approved_change(rt, "two files, the second slow", slow_plan(system))

    def entries() -> list[Any]:
        with session_scope(rt.engine) as session:
            return get_change_timeline(session=session, change_id=change_id)

    first, _ = start_up(data, env, demo=False)
    step, step_ticks = 0, None
    try:
        lost_run = create_implementation_run(prefect_api, prefect_auth(data), change_id)
        wait_for("b.txt half written", lambda: (system / "b.txt").exists(), timeout=120)
        step = int(wait_for("the step's pid", lambda: (system / "b.pid").read_text().strip(), 10))
        step_ticks = start_ticks(step)
        old_tree = power_cut(first, spare_group=step)
    finally:
        if first.poll() is None:  # failed before the cut: leave nothing running
            power_cut(first)
    second = None
    try:
        assert status(rt, change_id) == "implementing"
        assert alive(step, step_ticks), "the step runs on as an orphan after the power cut"
        assert old_tree, "the stack had processes"
        wait_for(
            "the killed processes to end",
            lambda: not [pid for pid, ticks in old_tree.items() if alive(pid, ticks)],
            timeout=15,
        )

        second, _ = start_up(data, env, demo=False)
        ready = time.monotonic()
        wait_for("the orphan killed", lambda: not alive(step, step_ticks), timeout=60)
        killed_at = time.monotonic()
        left = 60 - (killed_at - ready)
        wait_for(
            "the change rolled back",
            lambda: status(rt, change_id) == "rolled_back",
            timeout=max(left, 1),
        )
        rolled_back_at = time.monotonic()

        # The orphan never finished: b.txt is undone and stays so.
        time.sleep(1)
        assert sorted(p.name for p in system.iterdir()) == ["b.pid"]
        timeline = entries()
        kinds = [(e.kind, e.data.get("name")) for e in timeline]
        expected_order = [
            ("step_started", "write a"),
            ("step_ok", "write a"),
            ("step_started", "write b"),
            ("recovery_started", None),
            ("rollback_started", "write b"),
            ("rollback_ok", "write b"),
            ("rollback_started", "write a"),
            ("rollback_ok", "write a"),
            ("recovered", None),
        ]
        positions = [kinds.index(item) for item in expected_order]
        assert positions == sorted(positions), kinds
        recovery = next(e for e in timeline if e.kind == "recovery_started")
        # Found by the runner's sweep or, when the server's heartbeat trigger survived the
        # cut and fired first, by that trigger: either way the timeline names the lost run.
        assert lost_run in recovery.message, recovery.message
        found_by = "runner" if "found lost by the runner" in recovery.message else "trigger"
        assert "write b, write a" in recovery.message
        # Killed by the runner as it found the run lost, or by the recovery: before the undo.
        (killed,) = [e for e in timeline if e.kind == "step_processes_killed"]
        assert kinds.index(("step_started", "write b")) < timeline.index(killed)
        assert timeline.index(killed) < kinds.index(("rollback_started", "write b"))
        assert [k["pgid"] for k in killed.data["killed"]] == [step], killed.data
        assert lost_run in killed.message and "write b" in killed.message
        # Nothing of the first stack runs, the orphan's group included.
        assert not [pid for pid, ticks in old_tree.items() if alive(pid, ticks)]
        assert not [
            p
            for p in Path("/proc").iterdir()
            if p.name.isdigit()
            and (s := proc_stat(int(p.name)))
            and s[0] != "Z"
            and int(s[2]) == step
        ]
    finally:
        if second is not None:
            second.send_signal(signal.SIGINT)
            second.communicate(timeout=120)
        if alive(step, step_ticks):  # the recovery failed to: never leave the orphan behind
            os.killpg(step, signal.SIGKILL)

    fault_figures(
        "stack killed mid-step, started again",
        up_to_orphan_killed_s=round(killed_at - ready, 1),
        up_to_rolled_back_s=round(rolled_back_at - ready, 1),
        old_processes_killed=len(old_tree),
        found_by=found_by,
    )
