"""`itilflow up --demo` on a fresh data folder: everything starts, works, stops, and a second
`up` finds its data again."""

from __future__ import annotations

import email
import email.policy
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.approval_codes import code_in
from tests.support.smtp import free_port

PROJECT = Path(__file__).resolve().parent.parent


def start_up(
    data_dir: Path, ports: dict[str, int], database_env: dict[str, str]
) -> subprocess.Popen[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ITILFLOW_", "PREFECT_"))
    }
    env.update(
        database_env,
        ITILFLOW_PREFECT_PORT=str(ports["prefect"]),
        ITILFLOW_GATEWAY_PORT=str(ports["gateway"]),
        ITILFLOW_DEMO_SMTP_PORT=str(ports["smtp"]),
        ITILFLOW_DEMO_CHAT_PORT=str(ports["chat"]),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "itilflow.cli", "--data-dir", str(data_dir), "up", "--demo"],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    deadline = time.monotonic() + 240
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        output.append(line)
        if "Ctrl-C stops everything" in line:
            return process
    process.kill()
    raise AssertionError("itilflow up did not come up:\n" + "".join(output))


def stop_up(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=90) == 0


def port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def wait_until(check, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(600)
def test_up_runs_the_stack_and_a_second_up_reuses_the_data(
    tmp_path: Path, stack_database_env: dict[str, str]
):
    data = tmp_path / "data"
    ports = {name: free_port() for name in ("prefect", "gateway", "smtp", "chat")}
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    prefect_api = f"http://127.0.0.1:{ports['prefect']}/api"

    process = start_up(data, ports, stack_database_env)
    try:
        token = dict(
            line.split("=", 1) for line in (data / "secrets.env").read_text().splitlines()
        )["ITILFLOW_API_TOKEN"]
        api = httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {token}"})

        # The demo incidents are classified, assigned and notified by the runner.
        incidents = wait_until(
            lambda: (
                [i for i in api.get("/api/incidents").json() if i["assignee"]] or None
                if len(api.get("/api/incidents").json()) == 4
                else None
            ),
            what="demo incidents assigned",
        )
        assert incidents
        wait_until(lambda: list((data / "demo-inbox" / "mail").glob("*.eml")), what="mail")
        wait_until(lambda: (data / "demo-inbox" / "chat.jsonl").exists(), what="chat")

        # The demo change waits for its technical lead; approve it from the emailed link.
        def approval_link() -> str | None:
            for mail in sorted((data / "demo-inbox" / "mail").glob("*.eml")):
                text = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
                body = text.get_body(("plain",)).get_content()
                found = re.search(r"(http://\S+/approvals/\S+)\?decision=approve", body)
                if found and "chen@example.com" in text["To"]:
                    return found.group(1)
            return None

        link = wait_until(approval_link, timeout=120, what="the approval mail")
        assert httpx.get(link).status_code == 200
        # The button mails chen a one-time code; only the code decides.
        pressed = httpx.post(link, data={"decision": "approve"})
        assert pressed.status_code == 200 and "c***@example.com" in pressed.text

        def approval_code() -> str | None:
            for mail in sorted((data / "demo-inbox" / "mail").glob("*.eml")):
                text = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
                code = code_in(text)
                if code and "chen@example.com" in text["To"]:
                    return code
            return None

        code = wait_until(approval_code, timeout=30, what="the code mail")
        decided = httpx.post(link, data={"decision": "approve", "code": code})
        assert decided.status_code == 200 and "recorded" in decided.text
        wait_until(
            lambda: api.get("/api/changes/1").json()["status"] == "successful",
            timeout=120,
            what="the demo change to be implemented",
        )

        # Every deployment in prefect.yaml is registered on the server.
        declared = {
            d["name"] for d in yaml.safe_load((PROJECT / "prefect.yaml").read_text())["deployments"]
        }
        deployments = httpx.post(f"{prefect_api}/deployments/filter", json={}).json()
        assert {d["name"] for d in deployments} == declared

        # A run of the UI's update-incident deployment, picked up by the worker.
        update = next(d for d in deployments if d["name"] == "update-incident")

        def create_run() -> httpx.Response | None:
            response = httpx.post(
                f"{prefect_api}/deployments/{update['id']}/create_flow_run",
                json={
                    "parameters": {
                        "incident": "INC-000001",
                        "action": "acknowledge",
                        "note": "from the UI",
                    }
                },
            )
            # 503 is Prefect's "try again": its SQLite database was busy (its client retries too).
            return None if response.status_code == 503 else response

        run = wait_until(create_run, timeout=60, what="the flow run to be created")
        assert run.status_code == 201, run.text
        wait_until(
            lambda: api.get("/api/incidents/1").json()["status"] == "acknowledged",
            timeout=120,
            what="the worker to run update-incident",
        )
    finally:
        stop_up(process)
    for port in ports.values():
        wait_until(lambda port=port: port_closed(port), timeout=30, what=f"port {port} closed")

    process = start_up(data, ports, stack_database_env)
    try:
        api = httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {token}"})
        listed = api.get("/api/incidents").json()
        assert len(listed) == 4, "the demo opened nothing twice"
        assert api.get("/api/incidents/1").json()["status"] == "acknowledged"
    finally:
        stop_up(process)
