"""`itilflow up` as a child of a test: started in the project folder, and waited for; and
whatever is left of it killed after the test (tests/conftest.py's autouse `_no_stack_left`),
however the test ended."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from itilflow.settings import read_prefect_auth_string

PROJECT = Path(__file__).resolve().parent.parent.parent

# The stacks this test started, for kill_leftovers: (`up`, its data folder).
_STARTED: list[tuple[subprocess.Popen[str], Path]] = []


def start_up(
    data_dir: Path, env: dict[str, str], *, demo: bool = True
) -> tuple[subprocess.Popen[str], list[str]]:
    """`itilflow up --demo` (or `up`, with `demo=False`: its secrets must be in `env`) on
    `data_dir`, once it says it is up; with what it said so far."""
    up = ["up", "--demo"] if demo else ["up"]
    process = subprocess.Popen(
        [sys.executable, "-m", "itilflow.cli", "--data-dir", str(data_dir), *up],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A group of its own, which kill_leftovers can kill without killing the test.
        start_new_session=True,
    )
    _STARTED.append((process, Path(data_dir)))
    output: list[str] = []
    deadline = time.monotonic() + 240
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        output.append(line)
        if "Ctrl-C stops everything" in line:
            return process, output
    process.kill()
    process.wait()
    raise AssertionError("itilflow up did not come up:\n" + "".join(output))


def wait_until(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """`check()`'s first truthy answer, asked every 0.5 s for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def prefect_auth(data_dir: Path) -> httpx.BasicAuth:
    """The credentials `itilflow up` generated for the Prefect server it started: every call
    to its API but /health needs them."""
    stored = read_prefect_auth_string(data_dir)
    assert stored, f"no Prefect credentials in {data_dir}"
    user, _, password = stored.partition(":")
    return httpx.BasicAuth(user, password)


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the name: [1] ppid, [2] process group; None: no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def stack_processes(up_pid: int | None, data_dir: Path) -> set[int]:
    """`up` (None: it has ended) and what lives under it, and any process given the data folder
    as its ITILFLOW_DATA_DIR (`up` gives its children that): those orphaned by a killed `up` too."""
    marker = f"ITILFLOW_DATA_DIR={data_dir}".encode()
    children: dict[int, list[int]] = {}
    marked: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not (stat := _proc_stat(int(entry.name))):
            continue
        children.setdefault(int(stat[1]), []).append(int(entry.name))
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                marked.add(int(entry.name))
        except OSError:
            pass
    roots = marked | ({up_pid} if up_pid is not None else set())
    found, todo = set(roots), list(roots)
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += [child for child in children.get(pid, []) if child not in found]
    return found


def kill_stack(process: subprocess.Popen[str], data_dir: Path) -> list[int]:
    """SIGKILL every process group of the stack (each child of `up` runs in a session of its
    own, so `up`'s group alone is not enough) but the test's; returns the pids it found alive."""
    # Once `up` has been waited for, its pid (and group id) may be another process's: then only
    # what carries the data folder is the stack's. Until then the pid stays `up`'s, a zombie.
    up_pid = process.pid if process.poll() is None else None
    pids = [pid for pid in stack_processes(up_pid, data_dir) if _proc_stat(pid)]
    own_group = os.getpgid(0)
    groups = {int(stat[2]) for pid in pids if (stat := _proc_stat(pid))} - {own_group}
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in pids:  # any in the test's own group
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    process.wait(timeout=30)
    return [pid for pid in pids if pid != process.pid]


def kill_leftovers() -> None:
    """After a test: kill what is left of the stacks it started (none, when it stopped them)."""
    while _STARTED:
        process, data_dir = _STARTED.pop()
        kill_stack(process, data_dir)
