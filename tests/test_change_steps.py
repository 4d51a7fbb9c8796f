"""The change step executor against real parts: files changed by shell steps in a temporary folder
and a small local service whose health endpoint reads the config those steps change."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from itilflow.executors import (
    KILL_GRACE_SECONDS,
    ActionResult,
    ChangePlan,
    ChangeStep,
    HttpAction,
    ShellAction,
    aexecute_plan,
    arun_action,
    plan_rollback,
)
from tests.support.change_service import ConfigService

pytestmark = pytest.mark.timeout(30)


# ---------------------------------------------------------------------------------------------
# A system to change: a config file, its backup folder, an operations log and a service.


@dataclass
class System:
    root: Path
    service: ConfigService

    @property
    def config(self) -> Path:
        return self.root / "app.conf"

    @property
    def log(self) -> Path:
        return self.root / "ops.log"

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def sh(self, command: str, **fields: Any) -> dict[str, Any]:
        return {"kind": "shell", "command": command, "cwd": str(self.root), **fields}

    def health(self, expect_text: str | None = None, **fields: Any) -> dict[str, Any]:
        return {
            "kind": "http",
            "url": f"{self.service.url}/health",
            "expect_text": expect_text,
            "timeout": 2,
            **fields,
        }


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    (tmp_path / "app.conf").write_text("version=1\nworkers=4\n")
    (tmp_path / "backup").mkdir()
    with ConfigService(tmp_path / "app.conf") as service:
        yield System(tmp_path, service)


def make_plan(system: System, **overrides: Any) -> ChangePlan:
    """The version bump: back up the config, write version 2, check the service reports it."""
    data: dict[str, Any] = {
        "backup": [{"name": "copy-config", "do": system.sh("cp app.conf backup/app.conf")}],
        "steps": [
            {
                "name": "bump-version",
                "do": system.sh("sed 's/^version=1$/version=2/' backup/app.conf > app.conf"),
                "undo": system.sh("cp backup/app.conf app.conf"),
            }
        ],
        "verify": [{"name": "health", "do": system.health("ok version=2")}],
        "rollback_verify": [{"name": "health", "do": system.health("ok version=1")}],
    }
    data.update(overrides)
    return ChangePlan.model_validate(data)


def logged_step(system: System, n: int, *, fail: bool = False, undo_fails: bool = False) -> dict:
    """Step n touches file n and logs `do n`; its undo logs `undo n` and removes the file."""
    do = f"echo 'do {n}' >> ops.log && touch applied-{n}" + (" && exit 3" if fail else "")
    undo = f"echo 'undo {n}' >> ops.log && rm -f applied-{n}" + (" && exit 4" if undo_fails else "")
    return {"name": f"step-{n}", "do": system.sh(do), "undo": system.sh(undo)}


def trail(outcome) -> list[tuple[str, str, bool]]:
    return [(e.phase, e.name, e.result.ok) for e in outcome.events]


# ---------------------------------------------------------------------------------------------
# Whole changes


async def test_a_successful_change_is_applied_and_verified(system: System):
    recorded: list[tuple[str, str, ActionResult | None]] = []

    async def on_event(phase: str, name: str, result: ActionResult | None) -> None:
        recorded.append((phase, name, result))

    outcome = await aexecute_plan(make_plan(system), on_event=on_event)

    assert outcome.outcome == "successful" and outcome.ok
    assert outcome.failure is None and outcome.not_rolled_back == []
    assert system.config.read_text() == "version=2\nworkers=4\n"
    assert (system.root / "backup" / "app.conf").read_text() == "version=1\nworkers=4\n"
    assert (await arun_action(HttpAction.model_validate(system.health("ok version=2")))).ok
    assert trail(outcome) == [
        ("backup", "copy-config", True),
        ("step", "bump-version", True),
        ("verify", "health", True),
    ]
    # Every action is announced (result None) and then reported, in order.
    assert [(p, n, r is None) for p, n, r in recorded] == [
        ("backup", "copy-config", True),
        ("backup", "copy-config", False),
        ("step", "bump-version", True),
        ("step", "bump-version", False),
        ("verify", "health", True),
        ("verify", "health", False),
    ]
    verify = outcome.events[-1].result
    assert verify.status_code == 200
    assert verify.summary == f"GET {system.service.url}/health -> 200 OK"
    assert verify.output == "HTTP 200 OK\nok version=2"


async def test_a_failed_verification_is_rolled_back_and_the_rollback_verified(system: System):
    # The new version's config breaks the service: health answers 503.
    plan = make_plan(
        system,
        steps=[
            {
                "name": "bump-version",
                "do": system.sh("printf 'version=2\\nbroken=yes\\n' > app.conf"),
                "undo": system.sh("cp backup/app.conf app.conf"),
            }
        ],
    )

    outcome = await aexecute_plan(plan)

    assert outcome.outcome == "rolled_back"
    assert trail(outcome) == [
        ("backup", "copy-config", True),
        ("step", "bump-version", True),
        ("verify", "health", False),
        ("rollback", "bump-version", True),
        ("rollback_verify", "health", True),
    ]
    assert outcome.failure is not None and outcome.failure.phase == "verify"
    assert outcome.failure.result.status_code == 503
    assert "503" in outcome.failure.result.summary
    assert "expected 2xx" in outcome.failure.result.summary
    assert system.config.read_text() == "version=1\nworkers=4\n"
    old = await arun_action(HttpAction.model_validate(system.health("ok version=1")))
    assert old.ok, old.summary


async def test_a_step_failing_midway_undoes_it_and_the_earlier_steps_in_reverse(system: System):
    plan = make_plan(
        system,
        steps=[logged_step(system, 1), logged_step(system, 2), logged_step(system, 3, fail=True)],
        rollback_verify=[],
    )

    outcome = await aexecute_plan(plan)

    assert outcome.outcome == "rolled_back"
    assert system.log_lines() == ["do 1", "do 2", "do 3", "undo 3", "undo 2", "undo 1"]
    assert not list(system.root.glob("applied-*"))
    assert outcome.failure is not None
    assert (outcome.failure.phase, outcome.failure.name) == ("step", "step-3")
    assert outcome.failure.result.exit_code == 3
    assert outcome.failure.result.summary == "exit 3, expected 0"
    assert [e.name for e in outcome.events if e.phase == "verify"] == []


async def test_a_failing_undo_stops_the_rollback_as_rollback_failed(system: System):
    plan = make_plan(
        system,
        steps=[
            logged_step(system, 1),
            logged_step(system, 2, undo_fails=True),
            logged_step(system, 3, fail=True),
        ],
        rollback_verify=[{"name": "health", "do": system.health("ok version=1")}],
    )

    outcome = await aexecute_plan(plan)

    assert outcome.outcome == "rollback_failed"
    # Undo 1 is not attempted once undo 2 failed; the rollback check still reports the state.
    assert system.log_lines() == ["do 1", "do 2", "do 3", "undo 3", "undo 2"]
    assert outcome.not_rolled_back == ["step-2", "step-1"]
    assert (system.root / "applied-1").exists()
    assert trail(outcome)[-2:] == [
        ("rollback", "step-2", False),
        ("rollback_verify", "health", True),
    ]


async def test_a_failing_rollback_check_is_rollback_failed(system: System):
    plan = make_plan(
        system,
        verify=[{"name": "health", "do": system.health("version=9")}],
        rollback_verify=[{"name": "health", "do": system.health("version=7")}],
    )

    outcome = await aexecute_plan(plan)

    assert outcome.outcome == "rollback_failed"
    assert outcome.not_rolled_back == []
    assert system.config.read_text() == "version=1\nworkers=4\n"
    rollback_check = outcome.events[-1]
    assert rollback_check.phase == "rollback_verify" and not rollback_check.result.ok
    assert "body does not contain 'version=7'" in rollback_check.result.summary


async def test_an_irreversible_step_blocks_the_rollback_past_it(system: System):
    irreversible = {
        "name": "step-2",
        "do": system.sh("echo 'do 2' >> ops.log"),
        "irreversible": True,
    }
    plan = make_plan(
        system,
        steps=[logged_step(system, 1), irreversible, logged_step(system, 3, fail=True)],
        rollback_verify=[],
    )
    assert plan.irreversible_steps == ["step-2"]

    outcome = await aexecute_plan(plan)

    assert outcome.outcome == "rollback_failed"
    assert system.log_lines() == ["do 1", "do 2", "do 3", "undo 3"]
    assert outcome.not_rolled_back == ["step-2", "step-1"]
    blocked = outcome.events[-1]
    assert (blocked.phase, blocked.name) == ("rollback", "step-2")
    assert "irreversible" in blocked.result.summary


async def test_a_failed_backup_applies_nothing(system: System):
    plan = make_plan(
        system,
        backup=[{"name": "copy-config", "do": system.sh("cp missing.conf backup/app.conf")}],
        steps=[logged_step(system, 1)],
    )

    outcome = await aexecute_plan(plan)

    assert outcome.outcome == "backup_failed"
    assert trail(outcome) == [("backup", "copy-config", False)]
    assert "missing.conf" in outcome.events[0].result.summary
    assert system.log_lines() == []
    assert system.config.read_text() == "version=1\nworkers=4\n"


async def test_a_runner_can_wrap_each_action(system: System):
    seen: list[tuple[str, str]] = []

    async def runner(phase, name, action):
        seen.append((phase, name))
        if name == "bump-version" and phase == "step":
            raise RuntimeError("task crashed")
        return await arun_action(action)

    announced: list[tuple[str, str]] = []

    def on_event(phase: str, name: str, result: ActionResult | None) -> None:
        if result is None:
            announced.append((phase, name))

    outcome = await aexecute_plan(make_plan(system), runner=runner, on_event=on_event)

    # A crashed runner counts as a failed step, so the change is still rolled back.
    assert outcome.outcome == "rolled_back"
    assert seen == [
        ("backup", "copy-config"),
        ("step", "bump-version"),
        ("rollback", "bump-version"),
        ("rollback_verify", "health"),
    ]
    assert announced == seen
    assert outcome.failure is not None
    assert outcome.failure.result.summary == "error: RuntimeError: task crashed"


def test_plan_rollback_lists_completed_steps_latest_first(system: System):
    plan = make_plan(system, steps=[logged_step(system, n) for n in (1, 2, 3)], rollback_verify=[])
    assert [s.name for s in plan_rollback(plan, ["step-2", "step-1"])] == ["step-2", "step-1"]
    assert [s.name for s in plan_rollback(plan, ["step-1", "step-3"])] == ["step-3", "step-1"]
    assert plan_rollback(plan, []) == []
    with pytest.raises(ValueError, match="step-9"):
        plan_rollback(plan, ["step-9"])


# ---------------------------------------------------------------------------------------------
# Shell actions


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "\nState:\tZ" not in status


def _wait_dead(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


async def test_a_shell_timeout_kills_the_whole_process_group(tmp_path: Path):
    action = ShellAction(
        command="echo started; sleep 100 & echo $! > child.pid; wait",
        cwd=str(tmp_path),
        timeout=0.5,
    )
    started = time.monotonic()
    result = await arun_action(action)
    elapsed = time.monotonic() - started

    child = int((tmp_path / "child.pid").read_text())
    try:
        assert not result.ok and result.timed_out
        assert result.summary == "timed out after 0.5s"
        assert "started" in result.output
        assert elapsed < 3
        assert _wait_dead(child), f"child {child} survived the time-out"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


async def test_a_group_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path):
    action = ShellAction(
        command="trap '' TERM; sleep 100 & echo $! > child.pid; wait",
        cwd=str(tmp_path),
        timeout=0.3,
    )
    started = time.monotonic()
    result = await arun_action(action)
    child = int((tmp_path / "child.pid").read_text())
    try:
        assert result.timed_out and result.exit_code == -signal.SIGKILL
        assert KILL_GRACE_SECONDS <= time.monotonic() - started < KILL_GRACE_SECONDS + 2
        assert _wait_dead(child)
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


async def test_cancelling_a_running_action_kills_its_process_group(tmp_path: Path):
    pid_file = tmp_path / "child.pid"
    action = ShellAction(command="sleep 100 & echo $! > child.pid; wait", cwd=str(tmp_path))
    task = asyncio.create_task(arun_action(action))
    deadline = time.monotonic() + 5
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the command never started"
        await asyncio.sleep(0.02)
    child = int(pid_file.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    try:
        assert _wait_dead(child), f"child {child} survived the cancellation"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


async def test_a_background_child_holding_the_output_does_not_hang_the_step(tmp_path: Path):
    action = ShellAction(command="sleep 20 & echo $! > child.pid; echo done", cwd=str(tmp_path))
    started = time.monotonic()
    result = await arun_action(action)
    child = int((tmp_path / "child.pid").read_text())
    try:
        assert result.ok and result.exit_code == 0
        assert time.monotonic() - started < 3
        assert result.output.startswith("done\n")
        assert "left open by a background process" in result.output
    finally:
        os.kill(child, signal.SIGKILL)


async def test_argv_runs_without_a_shell_and_expect_exit_is_honoured(tmp_path: Path):
    result = await arun_action(ShellAction(argv=["echo", "$HOME", "a b"], cwd=str(tmp_path)))
    assert result.ok and result.output == "$HOME a b\n"

    result = await arun_action(ShellAction(argv=["sh", "-c", "exit 5"], expect_exit=5))
    assert result.ok and result.summary == "exit 5"

    result = await arun_action(ShellAction(command="echo out; echo oops >&2; exit 1"))
    assert not result.ok and result.exit_code == 1
    assert result.output == "out\noops\n"
    assert result.summary == "exit 1, expected 0: oops"


async def test_a_command_that_cannot_start_is_a_failed_action(tmp_path: Path):
    result = await arun_action(ShellAction(argv=["/no/such/program"]))
    assert not result.ok and result.exit_code is None
    assert "could not start" in result.summary and "/no/such/program" in result.summary

    result = await arun_action(ShellAction(command="true", cwd=str(tmp_path / "gone")))
    assert not result.ok and result.summary.startswith("working directory does not exist")


async def test_env_values_never_reach_the_output():
    secret = "s3cr3t-token-value"
    result = await arun_action(
        ShellAction(
            command='echo "token=$API_TOKEN"; echo "$API_TOKEN" >&2; exit 2',
            env={"API_TOKEN": secret},
        )
    )
    assert not result.ok
    assert secret not in result.output and secret not in result.summary
    assert result.output == "token=[redacted]\n[redacted]\n"
    assert "API_TOKEN" not in os.environ


async def test_a_step_gets_the_allowed_environment_and_its_own_never_the_workers(monkeypatch):
    monkeypatch.setenv("ITILFLOW_SECRET_KEY", "worker-secret-value")
    monkeypatch.setenv("SOMETHING_ELSE", "worker-value")
    result = await arun_action(ShellAction(command="env", env={"MINE": "step-value"}))
    assert result.ok
    names = {line.split("=", 1)[0] for line in result.output.splitlines()}
    assert {"PATH", "MINE"} <= names
    assert "ITILFLOW_SECRET_KEY" not in names and "SOMETHING_ELSE" not in names
    assert "worker-secret-value" not in result.output


async def test_long_output_keeps_its_head_and_tail():
    command = "echo FIRST; head -c 100000 /dev/zero | tr '\\0' x; echo; echo LAST"
    result = await arun_action(ShellAction(command=command))
    assert result.ok
    assert len(result.output) < 8400
    assert result.output.startswith("FIRST\n") and result.output.endswith("LAST\n")
    assert "bytes left out" in result.output


async def test_timestamps_are_aware_and_ordered():
    result = await arun_action(ShellAction(command="sleep 0.1"))
    assert result.started_at.tzinfo is not None
    assert result.finished_at >= result.started_at
    assert 0.1 <= result.duration_seconds < 2


# ---------------------------------------------------------------------------------------------
# HTTP actions


async def test_an_http_timeout_is_a_failed_action(system: System):
    action = HttpAction(url=f"{system.service.url}/slow?seconds=3", timeout=0.3)
    started = time.monotonic()
    result = await arun_action(action)
    assert not result.ok and result.timed_out
    assert result.summary.endswith("timed out after 0.3s")
    assert time.monotonic() - started < 2


async def test_a_refused_connection_is_a_failed_action():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await arun_action(HttpAction(url=f"http://127.0.0.1:{port}/health", timeout=2))
    assert not result.ok and result.status_code is None
    assert result.summary.startswith(f"GET http://127.0.0.1:{port}/health: could not connect")
    assert result.summary.endswith("could not connect: Connection refused")


async def test_http_status_expectations_and_secret_headers(system: System):
    missing = HttpAction(url=f"{system.service.url}/nothing", expect_status=[404])
    result = await arun_action(missing)
    assert result.ok and result.status_code == 404

    result = await arun_action(HttpAction(url=f"{system.service.url}/nothing"))
    assert not result.ok and result.summary.endswith("404 Not Found, expected 2xx")

    # The service echoes nothing secret, but a header's value must never reach the result.
    token = "Bearer very-secret-token"
    url = f"http://user:hunter22@127.0.0.1:{system.service.url.rsplit(':', 1)[1]}/health"
    action = HttpAction(url=url, headers={"Authorization": token}, expect_text="nope")
    result = await arun_action(action)
    assert not result.ok
    assert "hunter22" not in result.summary and token not in result.summary
    assert result.summary.startswith(f"GET {system.service.url}/health -> 200 OK")


# ---------------------------------------------------------------------------------------------
# Validation and storage


def test_a_plan_round_trips_through_json(system: System):
    plan = make_plan(
        system,
        verify=[
            {
                "name": "notify",
                "do": {
                    "kind": "http",
                    "method": "post",
                    "url": "https://x.test/",
                    "json": [1],
                },
            }
        ],
    )
    data = plan.model_dump(mode="json")
    assert data["verify"][0]["do"]["json"] == [1]
    assert data["verify"][0]["do"]["method"] == "POST"
    assert data["verify"][0]["do"]["expect_status"] == ["2xx"]
    assert ChangePlan.model_validate(data) == plan
    assert ChangePlan.model_validate_json(plan.model_dump_json()) == plan
    assert "ChangeStep" in ChangePlan.model_json_schema()["$defs"]


def _error(data: dict[str, Any], model: type = ChangePlan) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return str(caught.value)


SH = {"kind": "shell", "command": "true"}


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (
            {"steps": [{"name": "a", "do": SH, "undo": SH}, {"name": "a", "do": SH, "undo": SH}]},
            "duplicate name 'a' in steps",
        ),
        (
            {
                "steps": [{"name": "a", "do": SH, "undo": SH}],
                "verify": [{"name": "c", "do": SH}, {"name": "c", "do": SH}],
            },
            "duplicate name 'c' in verify",
        ),
        (
            {"steps": [{"name": "a", "do": SH}]},
            "step 'a' has no undo: give one, or set 'irreversible: true'",
        ),
        (
            {"steps": [{"name": "a", "do": SH, "undo": SH, "irreversible": True}]},
            "step 'a' is irreversible but has an undo",
        ),
        ({"steps": []}, "steps\n  List should have at least 1 item"),
        (
            {"steps": [{"name": "a", "do": {"kind": "ftp", "url": "x"}, "undo": SH}]},
            "does not match any of the expected tags: 'shell', 'http'",
        ),
        (
            {"steps": [{"name": "a", "do": {"command": "true"}, "undo": SH}]},
            "Unable to extract tag using discriminator 'kind'",
        ),
        (
            {"steps": [{"name": "a", "do": SH, "undo": SH, "rollback": SH}]},
            "steps.0.rollback\n  Extra inputs are not permitted",
        ),
        (
            {"steps": [{"name": " ", "do": SH, "undo": SH}]},
            "steps.0.name",
        ),
    ],
    ids=[
        "duplicate-step",
        "duplicate-check",
        "missing-undo",
        "irreversible-with-undo",
        "no-steps",
        "unknown-kind",
        "no-kind",
        "extra-key",
        "blank-name",
    ],
)
def test_plan_validation_errors_are_clear(data: dict[str, Any], says: str):
    assert says in _error(data)


@pytest.mark.parametrize(
    ("data", "model", "says"),
    [
        ({"url": "ftp://host/file"}, HttpAction, "must be an http:// or https:// URL"),
        ({"url": "http://"}, HttpAction, "must be an http:// or https:// URL with a host"),
        ({"url": "http://h:99999/"}, HttpAction, "not a valid URL"),
        ({"url": "http://h/", "json": {}, "body": "x"}, HttpAction, "at most one of 'json'"),
        ({"url": "http://h/", "method": "TRACE"}, HttpAction, "method"),
        ({"url": "http://h/", "headers": {"X-A": "a\r\nb"}}, HttpAction, "line break"),
        ({"url": "http://h/", "expect_status": []}, HttpAction, "at least 1 item"),
        ({"command": "true", "argv": ["true"]}, ShellAction, "exactly one of 'command'"),
        ({}, ShellAction, "exactly one of 'command'"),
        ({"command": "true", "timeout": 7200}, ShellAction, "less than or equal to 3600"),
        ({"command": "true", "timeout": 0}, ShellAction, "greater than 0"),
        ({"argv": []}, ShellAction, "at least 1 item"),
        ({"command": "true", "env": {"A=B": "x"}}, ShellAction, "invalid environment variable"),
    ],
)
def test_action_validation_errors_are_clear(data: dict[str, Any], model: type, says: str):
    assert says in _error(data, model)


def test_a_step_model_can_be_built_in_code():
    step = ChangeStep(name="x", do=ShellAction(command="true"), undo=ShellAction(command="true"))
    assert step.do.kind == "shell"
    assert HttpAction(url="https://example.test/").expect_status == ["2xx"]
