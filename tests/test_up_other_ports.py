"""`itilflow up` as a user meets it: expected startup errors printed alone, and a demo stack on
ports other than the defaults, without node_exporter, whose own inspection and client commands
follow its settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.smtp import free_port
from tests.support.stack import prefect_auth, start_up, wait_until

PROJECT = Path(__file__).resolve().parent.parent


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


def test_up_on_an_invalid_policy_prints_the_policy_error_alone(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    for default in (PROJECT / "policies" / "defaults").glob("*.yaml"):
        (policies / default.name).write_text(default.read_text())
    sla = policies / "sla.yaml"
    sla.write_text(sla.read_text().replace("\n  P1:", "\n  P9:", 1))

    result = itilflow(
        "--data-dir",
        str(tmp_path / "data"),
        "up",
        "--demo",
        env=clean_env(ITILFLOW_POLICY_DIR=str(policies)),
    )

    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith(f"itilflow: invalid policies in {policies}:\nsla.yaml: ")
    assert "P9" in result.stderr and "expected one of P1, P2, P3, P4" in result.stderr
    assert not (tmp_path / "data" / "logs").exists(), "nothing was started"


def test_up_on_an_invalid_setting_prints_it_alone(tmp_path: Path) -> None:
    result = itilflow(
        "--data-dir",
        str(tmp_path / "data"),
        "up",
        "--demo",
        env=clean_env(ITILFLOW_GATEWAY_PORT="eighty"),
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "gateway_port" in result.stderr and "integer" in result.stderr


def test_client_commands_say_where_they_looked_for_a_token(tmp_path: Path) -> None:
    result = itilflow(
        "--data-dir", str(tmp_path / "nothing-here"), "incident", "show", "1", env=clean_env()
    )
    assert result.returncode == 2
    assert "no API token: ITILFLOW_API_TOKEN is not set" in result.stderr
    assert str(tmp_path / "nothing-here" / "secrets.env") in result.stderr
    assert "Traceback" not in result.stderr


def test_client_commands_say_when_the_gateway_is_not_there(tmp_path: Path) -> None:
    port = free_port()
    result = itilflow(
        "change",
        "submit",
        "docs/examples/change.yaml",
        env=clean_env(ITILFLOW_API_TOKEN="some-token", ITILFLOW_API_URL=f"http://127.0.0.1:{port}"),
    )
    assert result.returncode == 1
    assert f"cannot reach the gateway at http://127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(600)
def test_a_demo_on_other_ports_without_node_exporter(
    tmp_path: Path, stack_database_env: dict[str, str]
) -> None:
    data = tmp_path / "data"
    ports = {name: free_port() for name in ("prefect", "gateway", "smtp", "chat")}
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    prefect_api = f"http://127.0.0.1:{ports['prefect']}/api"
    env = clean_env(
        **stack_database_env,
        ITILFLOW_PREFECT_PORT=str(ports["prefect"]),
        ITILFLOW_GATEWAY_PORT=str(ports["gateway"]),
        ITILFLOW_DEMO_SMTP_PORT=str(ports["smtp"]),
        ITILFLOW_DEMO_CHAT_PORT=str(ports["chat"]),
        # "Not installed": a command that is on no PATH.
        ITILFLOW_NODE_EXPORTER_COMMAND="no-such-node-exporter",
    )
    process, output = start_up(data, env)
    # The Prefect server on SQLite answers slowly on a loaded 2-core machine: not httpx's 5 s.
    prefect = httpx.Client(timeout=60, auth=prefect_auth(data))
    try:
        said = "".join(output)
        assert "hosts inspection: off (no-such-node-exporter is not installed" in said
        assert not (data / "logs" / "node-exporter.log").exists()

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
        run = prefect.post(
            f"{prefect_api}/deployments/{platform['id']}/create_flow_run",
            json={"parameters": {"group": "platform"}},
        )
        assert run.status_code == 201, run.text

        def finished() -> dict | None:
            state = prefect.get(f"{prefect_api}/flow_runs/{run.json()['id']}").json()["state"]
            return state if state["type"] in ("COMPLETED", "FAILED", "CRASHED") else None

        state = wait_until(finished, timeout=180, what="the platform inspection run")
        assert state["type"] == "COMPLETED", state
        token = (data / "secrets.env").read_text().split("ITILFLOW_API_TOKEN=")[1].split()[0]
        api = httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {token}"})
        for target in ("gateway", "prefect-server"):
            history = api.get(f"/api/inspections/targets/{target}/history").json()
            # (A scheduled run may have come too: every result is ok.)
            assert history and {point["status"] for point in history} == {"ok"}, history
        titles = [incident["title"] for incident in api.get("/api/incidents").json()]
        assert not [t for t in titles if "gateway" in t.lower() or "prefect" in t.lower()], titles
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=90) == 0
