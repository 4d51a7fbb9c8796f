"""The runner's metrics: batches, incidents opened by priority, deliveries and SLA breaches
counted as the runner works (on a real Prefect server, SMTP server and chat sink), and served
on the runner's own endpoint."""

from __future__ import annotations

import logging
import socket
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from itilflow import clock
from itilflow.dispatch.runner import Runner
from itilflow.metrics import RUNNER, serve_runner_metrics
from tests.flows.test_incident_flow import MONDAY_MORNING, open_incident
from tests.support.smtp import free_port


def counted(name: str, **labels: str) -> float:
    return RUNNER.get_sample_value(name, labels) or 0.0


async def run(rt: Any) -> None:
    await Runner(rt.engine, concurrency=2, poll_seconds=0.05).run_until_idle(timeout=120)


@pytest.mark.usefixtures("prefect_server")
async def test_the_runner_counts_batches_incidents_deliveries_and_breaches(
    client: Any, rt: Any, smtp_server: Any, http_sink: Any
) -> None:
    names = {
        "p1": ("itilflow_incidents_opened_total", {"priority": "P1"}),
        "open": (
            "itilflow_runner_batches_total",
            {"flow": "open", "lane": "urgent", "outcome": "completed"},
        ),
        "mail": ("itilflow_notifications_total", {"channel": "email", "outcome": "delivered"}),
        "chat": ("itilflow_notifications_total", {"channel": "chat", "outcome": "delivered"}),
        "breach": ("itilflow_sla_breaches_total", {"sla": "response", "priority": "P1"}),
    }
    before = {key: counted(name, **labels) for key, (name, labels) in names.items()}

    def delta(key: str) -> float:
        name, labels = names[key]
        return counted(name, **labels) - before[key]

    clock.freeze(MONDAY_MORNING)
    open_incident(client)  # high impact and urgency: a P1
    await run(rt)
    assert delta("p1") == 1
    assert delta("open") == 1
    assert delta("mail") >= 1 and delta("chat") >= 1
    assert delta("breach") == 0
    heartbeat = counted("itilflow_runner_last_poll_timestamp_seconds")
    assert heartbeat > 0

    clock.freeze(MONDAY_MORNING + timedelta(minutes=31))  # no response within 30 minutes
    await run(rt)
    assert delta("breach") == 1
    assert counted("itilflow_runner_last_poll_timestamp_seconds") >= heartbeat


def test_the_runner_serves_its_metrics_on_its_port() -> None:
    port = free_port()
    server = serve_runner_metrics("127.0.0.1", port)
    assert server is not None
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert answer.status_code == 200
    assert "itilflow_runner_last_poll_timestamp_seconds" in answer.text
    assert "itilflow_gateway_requests" not in answer.text, "the gateway's counters are its own"


def test_a_taken_port_is_logged_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    with caplog.at_level(logging.WARNING, logger="itilflow.metrics"):
        assert serve_runner_metrics("127.0.0.1", port, retry_every=0.2) is None
        assert f"not served on 127.0.0.1:{port}" in caplog.text
        taken.close()
        deadline = time.monotonic() + 30
        while "after all" not in caplog.text:
            assert time.monotonic() < deadline, "served once the port was free"
            time.sleep(0.1)
    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert "itilflow_runner_last_poll_timestamp_seconds" in answer.text
    assert serve_runner_metrics("127.0.0.1", 0) is None  # 0: switched off


def test_the_runner_port_follows_the_gateway_unless_given(tmp_path: Any) -> None:
    from tests.conftest import make_settings

    assert make_settings(tmp_path, gateway_port=18080).runner_metrics_port == 18081
    assert (
        make_settings(tmp_path, gateway_port=18080, runner_metrics_port=0).runner_metrics_port == 0
    )
