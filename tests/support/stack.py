"""`itilflow up` as a child of a test: started in the project folder, and waited for."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from itilflow.settings import read_prefect_auth_string

PROJECT = Path(__file__).resolve().parent.parent.parent


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
    )
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
