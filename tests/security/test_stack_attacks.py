"""Issue 12's attacks against `itilflow up` in production mode (its own secrets, no demo data):
the same refusals as on the demo stack (tests/test_stack.py runs them there)."""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path

import pytest

from tests.support.attacks import assert_stack_refuses_attacks
from tests.support.smtp import free_port
from tests.support.stack import prefect_auth, start_up


@pytest.mark.timeout(600)
def test_a_production_stack_refuses_the_attacks(tmp_path: Path, smtp_server) -> None:
    token = secrets.token_urlsafe(32)
    ports = {name: free_port() for name in ("prefect", "gateway")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ITILFLOW_", "PREFECT_"))}
    env.update(
        ITILFLOW_API_TOKEN=token,
        ITILFLOW_SECRET_KEY=secrets.token_urlsafe(32),
        ITILFLOW_PREFECT_PORT=str(ports["prefect"]),
        ITILFLOW_GATEWAY_PORT=str(ports["gateway"]),
        ITILFLOW_SMTP_PORT=str(smtp_server.port),
        ITILFLOW_WORKERS="1",
    )
    data = tmp_path / "data"
    process, said = start_up(data, env, demo=False)
    try:
        assert token not in "".join(said)  # production mode prints the variable's name only
        assert_stack_refuses_attacks(
            gateway=f"http://127.0.0.1:{ports['gateway']}",
            prefect_api=f"http://127.0.0.1:{ports['prefect']}/api",
            auth=prefect_auth(data),
            admin_token=token,
        )
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=120)
