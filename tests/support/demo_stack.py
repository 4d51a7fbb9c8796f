"""Checks on a running demo stack started by a test (tests/test_stack.py's second start), and
the client commands run as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.stack import PROJECT, prefect_auth, wait_until


def clean_env(**extra: str) -> dict[str, str]:
    """A user's environment: none of the test run's ITILFLOW_ or PREFECT_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ITILFLOW_", "PREFECT_"))}
    env.update(extra)
    return env


def itilflow(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "itilflow.cli", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check_a_stack_without_node_exporter(
    data: Path, gateway: str, prefect_api: str, token: str
) -> None:
    """On a demo stack started without node_exporter and on ports other than the defaults: the
    hosts inspection's schedule is paused, the client commands follow ITILFLOW_API_URL and the
    data folder's token, and the platform inspection finds its own gateway and Prefect server."""
    # The Prefect server on SQLite answers slowly on a loaded 2-core machine: not httpx's 5 s.
    prefect = httpx.Client(timeout=60, auth=prefect_auth(data))
    # The hosts inspection's schedule is paused on the server, so it opens nothing.
    hosts = prefect.get(f"{prefect_api}/deployments/name/patrol-inspection/inspection-hosts")
    assert hosts.status_code == 200
    assert [s["active"] for s in hosts.json()["schedules"]] == [False]
    platform = prefect.get(
        f"{prefect_api}/deployments/name/patrol-inspection/inspection-platform"
    ).json()
    assert [s["active"] for s in platform["schedules"]] == [True]

    # The client commands: the URL from ITILFLOW_API_URL, the token from the data folder.
    client_env = clean_env(ITILFLOW_API_URL=gateway)
    opened = itilflow(
        "--data-dir", str(data), "incident", "open", "--title", "Printer", env=client_env
    )
    assert opened.returncode == 0, opened.stderr
    number = opened.stdout.strip()
    assert number.startswith("INC-")
    shown = itilflow("--data-dir", str(data), "incident", "show", number, env=client_env)
    assert shown.returncode == 0 and shown.stdout.startswith(number), shown.stderr
    refused = itilflow(
        "incident", "show", number, env={**client_env, "ITILFLOW_API_TOKEN": "not-the-token"}
    )
    assert refused.returncode == 1
    assert f"the gateway at {gateway} refused the API token from ITILFLOW_API_TOKEN (401)" in (
        refused.stderr
    )

    # The platform inspection, run now, finds its own gateway and Prefect server healthy
    # on these ports (inspection.yaml names them {gateway_url} and {prefect_api_url}).
    def create_run() -> httpx.Response | None:
        response = prefect.post(
            f"{prefect_api}/deployments/{platform['id']}/create_flow_run",
            json={"parameters": {"group": "platform"}},
        )
        # 503 is Prefect's "try again": its SQLite database was busy (its client retries too).
        return None if response.status_code == 503 else response

    run = wait_until(create_run, timeout=60, what="the inspection run to be created")
    assert run.status_code == 201, run.text

    def finished() -> dict | None:
        state = prefect.get(f"{prefect_api}/flow_runs/{run.json()['id']}").json()["state"]
        return state if state["type"] in ("COMPLETED", "FAILED", "CRASHED") else None

    state = wait_until(finished, timeout=180, what="the platform inspection run")
    assert state["type"] == "COMPLETED", state
    api = httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {token}"})
    for target in ("gateway", "prefect-server"):
        history = api.get(f"/api/inspections/targets/{target}/history").json()
        # (A scheduled run may have come too: every result is ok.)
        assert history and {point["status"] for point in history} == {"ok"}, history
    titles = [incident["title"] for incident in api.get("/api/incidents").json()]
    assert not [t for t in titles if "gateway" in t.lower() or "prefect" in t.lower()], titles
    prefect.close()
    api.close()
