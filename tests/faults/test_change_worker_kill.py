"""A change's worker dies with its host in the middle of a step: the change is rolled back by the
other worker, its files are as before, and its timeline says what happened. A second change,
whose run on the same host asked for approval, loses nothing: its run had ended once the mails
were out (a waiting change is rows, not a process), and it waits on, untouched.

The host's death is simulated by SIGKILLing the worker's process group and every process it
started (the run and the step's shell); SIGKILLing the worker alone leaves its runs running
(test_workers.py). The secrets reach the workers as Prefect Secret block names, and no secret
shows up in the workers' output or in the runs' logs.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from itilflow.models import get_change_timeline, session_scope
from itilflow.runtime import Runtime
from tests.faults.test_workers import (
    WorkerHosts,
    approved_change,
    deploy,
    recoveries_of,
    start_implementation,
    status,
    wait_for,
    worker_hosts,  # noqa: F401 (the fixture)
)


def three_file_plan(folder: Path) -> dict[str, Any]:
    a, b, c = (folder / f"{name}.txt" for name in "abc")
    return {
        "steps": [
            {
                "name": "write a",
                "do": {"kind": "shell", "command": f"echo a > {a}"},
                "undo": {"kind": "shell", "command": f"rm -f {a}"},
            },
            {
                # Half applied when the host dies: the first line is written, the second never.
                "name": "write b",
                "do": {"kind": "shell", "command": f"echo half > {b}; sleep 120; echo full >> {b}"},
                "undo": {"kind": "shell", "command": f"rm -f {b}"},
            },
            {
                "name": "write c",
                "do": {"kind": "shell", "command": f"echo c > {c}"},
                "undo": {"kind": "shell", "command": f"rm -f {c}"},
            },
        ],
        "rollback_verify": [
            {
                "name": "no files left",
                "do": {"kind": "shell", "command": f"test ! -e {a} && test ! -e {b}"},
            }
        ],
    }


def save_secret_blocks(rt: Runtime, prefix: str) -> dict[str, str]:
    """The run's secrets as Secret blocks; returns the env naming them instead of the values."""
    from prefect.blocks.system import Secret

    env = {}
    for field in ("api_token", "secret_key"):
        value = getattr(rt.settings, field).get_secret_value()
        name = f"{prefix}-{field.replace('_', '-')}"
        Secret(value=value).save(name, overwrite=True)
        env[f"ITILFLOW_{field.upper()}"] = ""
        env[f"ITILFLOW_{field.upper()}_SECRET_BLOCK"] = name
    return env


def start_change_process(change_id: int) -> str:
    from prefect.deployments import run_deployment

    async def start() -> str:
        run = await run_deployment(
            "change/manage-change", parameters={"change_id": change_id}, timeout=0
        )
        return str(run.id)

    return asyncio.run(start())


def waiting_change(rt: Runtime) -> int:
    from itilflow.services import changes

    with session_scope(rt.engine) as session:
        change = changes.submit_change(
            session=session,
            new=changes.NewChange(
                title="waits for its technical lead",
                plan={
                    "steps": [
                        {
                            "name": "noop",
                            "do": {"kind": "shell", "command": "true"},
                            "irreversible": True,
                        }
                    ]
                },
            ),
            actor="test",
        )
        session.flush()
        assert change.id is not None
        return change.id


def owner_of(rt: Runtime, change_id: int) -> str | None:
    from itilflow.models import Change

    with session_scope(rt.engine) as session:
        change = session.get(Change, change_id)
        assert change is not None
        return change.flow_run_id


def run_state(run_id: str) -> Any:
    from prefect import get_client

    async def read() -> Any:
        async with get_client() as client:
            return (await client.read_flow_run(UUID(run_id))).state

    return asyncio.run(read())


def run_logs(run_ids: list[str]) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async def read() -> list[str]:
        async with get_client() as client:
            logs = await client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(r) for r in run_ids])),
                limit=200,
            )
            return [log.message for log in logs]

    return asyncio.run(read())


@pytest.mark.timeout(240)
def test_a_host_dying_mid_step_leaves_the_change_rolled_back_and_says_so(
    rt: Runtime,
    worker_hosts: WorkerHosts,  # noqa: F811
    tmp_path: Path,
    fault_figures,
):
    worker_hosts.env.update(save_secret_blocks(rt, tmp_path.name.lower().replace("_", "-")))
    deploy(worker_hosts.env, "implement-change", "manage-change", "recover-change")
    files = tmp_path / "system"
    files.mkdir()
    change_id = approved_change(rt, "three files", three_file_plan(files))
    waiting = waiting_change(rt)

    worker_hosts.start("host-a", limit=2)
    run_id = start_implementation(change_id)
    first_run = start_change_process(waiting)

    def entries() -> list[Any]:
        with session_scope(rt.engine) as session:
            return get_change_timeline(session=session, change_id=change_id)

    wait_for(
        "step b to start",
        lambda: any(e.kind == "step_started" and e.data["name"] == "write b" for e in entries()),
        timeout=90,
    )
    wait_for("b.txt to be half written", lambda: (files / "b.txt").exists(), timeout=30)
    wait_for(
        "the other change's run to end once its approval mails are out",
        lambda: (state := run_state(first_run)) and state.is_completed(),
        timeout=60,
    )
    worker_hosts.start("host-b", limit=2)
    assert run_id in worker_hosts.runs_on("host-a")
    worker_hosts.kill_host("host-a")
    killed_at = time.monotonic()

    lost_at = wait_for(
        "the run to be declared lost",
        lambda: (state := run_state(run_id)) and state.is_crashed() and time.monotonic(),
        timeout=90,
    )
    wait_for(
        "the recovery to finish",
        lambda: (
            status(rt, change_id) == "rolled_back" and any(e.kind == "recovered" for e in entries())
        ),
        timeout=90,
    )
    recovered_at = time.monotonic()

    # The files are as before the change: the done step and the half-done one are undone.
    assert sorted(p.name for p in files.iterdir()) == []
    timeline = entries()
    kinds = [(e.kind, e.data.get("name")) for e in timeline]
    expected_order = [
        ("implementation_started", None),
        ("step_started", "write a"),
        ("step_ok", "write a"),
        ("step_started", "write b"),
        ("recovery_started", None),
        ("rollback_started", "write b"),
        ("rollback_ok", "write b"),
        ("rollback_started", "write a"),
        ("rollback_ok", "write a"),
        ("rollback_verify_ok", "no files left"),
        ("reviewed", None),
        ("recovered", None),
    ]
    positions = [kinds.index(item) for item in expected_order]
    assert positions == sorted(positions), kinds
    assert ("step_started", "write c") not in kinds
    assert [k for k, _ in kinds].count("implementation_started") == 1  # never run twice
    recovery = next(e for e in timeline if e.kind == "recovery_started")
    assert recovery.data["in_flight"] == ["step", "write b"]
    assert "lost" in recovery.message and "write b, write a" in recovery.message
    assert "rolled back" in next(e for e in timeline if e.kind == "recovered").message

    state = run_state(run_id)
    assert state.is_crashed() and state.name == "Lost", state

    # The change that waits for approval had no process to lose: it waits on, untouched.
    assert status(rt, waiting) == "awaiting_approval"
    assert owner_of(rt, waiting) == first_run
    with session_scope(rt.engine) as session:
        waiting_kinds = [e.kind for e in get_change_timeline(session=session, change_id=waiting)]
    assert waiting_kinds.count("process_restarted") == 0
    assert waiting_kinds.count("process_started") == 1
    recoveries = recoveries_of({run_id})
    assert recoveries, "a recover-change run did the rollback"

    # No secret in what the workers printed or in any log line of the runs involved.
    secrets = [
        rt.settings.api_token.get_secret_value(),
        rt.settings.secret_key.get_secret_value(),
    ]
    output = "".join(p.read_text(errors="replace") for p in tmp_path.glob("host-*.log"))
    logs = "\n".join(run_logs([run_id, *(str(r.id) for r in recoveries)]))
    assert logs, "the runs logged to the API"
    for secret in secrets:
        assert secret not in output and secret not in logs

    fault_figures(
        "host lost mid-step of a change",
        heartbeat_s=30,
        lost_after_s=45,
        kill_to_detected_s=round(lost_at - killed_at, 1),
        kill_to_rolled_back_s=round(recovered_at - killed_at, 1),
        steps_undone=2,
    )
