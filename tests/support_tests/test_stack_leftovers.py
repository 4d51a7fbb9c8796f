"""kill_stack (tests/support/stack.py) kills what a stack left, however it was left: a child in a
session of its own under `up`, and an orphan whose parent is gone but whose environment names
the stack's data folder; and nothing of anyone else's."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.support.stack import _proc_stat, kill_stack


def alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def wait_for_file(path: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} never written")


def test_kill_stack_kills_children_in_their_own_sessions_and_orphans(tmp_path: Path) -> None:
    data = tmp_path / "data"
    script = (
        f"setsid sleep 300 & echo $! > {tmp_path}/child.pid; "
        f"(setsid sleep 301 & echo $! > {tmp_path}/orphan.pid); wait"
    )
    env = {**os.environ, "ITILFLOW_DATA_DIR": str(data)}
    up = subprocess.Popen(["bash", "-c", script], env=env, start_new_session=True)
    # Someone else's process with another data folder: left alone.
    other = subprocess.Popen(
        ["sleep", "300"], env={**env, "ITILFLOW_DATA_DIR": str(tmp_path / "other")},
        start_new_session=True,
    )  # fmt: skip
    try:
        child = wait_for_file(tmp_path / "child.pid")
        orphan = wait_for_file(tmp_path / "orphan.pid")
        assert alive(child) and alive(orphan)
        assert int(_proc_stat(orphan)[1]) != up.pid  # reparented: found by its environment

        killed = kill_stack(up, data)

        assert {child, orphan} <= set(killed)
        assert up.returncode is not None
        deadline = time.monotonic() + 10
        while (alive(child) or alive(orphan)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child) and not alive(orphan)
        assert other.poll() is None
    finally:
        kill_stack(up, data)  # again, should the test fail before: leaves nothing behind
        other.kill()
        other.wait()
