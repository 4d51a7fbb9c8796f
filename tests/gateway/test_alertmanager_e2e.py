"""A real Prometheus Alertmanager sends its webhooks to the real gateway served by uvicorn.

Needs the alertmanager binary (`.ci/install-test-deps.sh`); without it the fixture fails with
the install hint rather than skipping.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

from itilflow.gateway.app import create_app
from tests.support.alertmanager import Alertmanager, make_alert

WEBHOOK_PATH = "/api/alertmanager"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")
        time.sleep(every)


@dataclass
class Gateway:
    url: str
    token: str
    client: httpx.Client
    # (status code) of every webhook delivery the gateway answered, in order.
    deliveries: list[int] = field(default_factory=list)

    @property
    def webhook_url(self) -> str:
        return f"{self.url}{WEBHOOK_PATH}"

    def incidents(self) -> list[dict[str, Any]]:
        response = self.client.get("/api/incidents")
        assert response.status_code == 200, response.text
        return response.json()

    def timeline(self, incident_id: int) -> list[dict[str, Any]]:
        response = self.client.get(f"/api/incidents/{incident_id}/timeline")
        assert response.status_code == 200, response.text
        return response.json()


class _CountDeliveries:
    """ASGI wrapper noting the status of every response to the webhook route."""

    def __init__(self, app: Any, deliveries: list[int]) -> None:
        self.app = app
        self.deliveries = deliveries

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != WEBHOOK_PATH:
            await self.app(scope, receive, send)
            return

        async def noting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.deliveries.append(message["status"])
            await send(message)

        await self.app(scope, receive, noting_send)


@pytest.fixture
def gateway(rt) -> Iterator[Gateway]:
    """The gateway app under uvicorn on a free loopback port, in a background thread."""
    assert rt.settings.api_token is not None
    token = rt.settings.api_token.get_secret_value()
    deliveries: list[int] = []
    app = _CountDeliveries(create_app(rt.settings, rt.policies), deliveries)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app=app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="gateway-uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=5, trust_env=False
    )

    def healthy() -> bool:
        assert thread.is_alive(), "uvicorn stopped during startup (see the log above)"
        try:
            return client.get("/health").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for("gateway /health", healthy, timeout=15, every=0.05)
        yield Gateway(url=url, token=token, client=client, deliveries=deliveries)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        client.close()
        assert not thread.is_alive(), "uvicorn did not stop"


ALERTS = [
    make_alert(
        "HostDown",
        instance="web-01:9100",
        labels={"severity": "critical", "job": "node"},
        annotations={"summary": "web-01:9100 is down"},
    ),
    make_alert(
        "DiskFull",
        instance="db-01:9100",
        labels={"severity": "warning", "job": "node"},
        annotations={"summary": "db-01 /var is 97% full"},
    ),
    make_alert(
        "HighLatency",
        instance="api-01:8080",
        labels={"severity": "info", "job": "api", "impact": "high"},
        annotations={"summary": "api-01 p99 latency above 2s"},
    ),
]


def test_alertmanager_webhooks_open_dedupe_and_resolve_incidents(gateway, alertmanager_factory):
    am: Alertmanager = alertmanager_factory(
        gateway.webhook_url,
        token=gateway.token,
        group_wait="500ms",
        group_interval="1s",
        repeat_interval="1s",
    )
    am.post_alerts(ALERTS)

    wait_for("3 incidents", lambda: len(gateway.incidents()) >= 3, timeout=10)
    by_title = {incident["title"]: incident for incident in gateway.incidents()}
    assert len(by_title) == len(gateway.incidents()) == 3
    assert set(by_title) == {alert["annotations"]["summary"] for alert in ALERTS}
    assert {i["source"] for i in by_title.values()} == {"alertmanager"}
    assert all(i["fingerprint"] for i in by_title.values())
    assert {i["status"] for i in by_title.values()} == {"new"}
    host_down = by_title["web-01:9100 is down"]
    assert (host_down["ci"], host_down["impact"], host_down["urgency"]) == (
        "web-01:9100",
        "medium",
        "high",
    )
    latency = by_title["api-01 p99 latency above 2s"]
    assert (latency["impact"], latency["urgency"]) == ("high", "low")

    # Alertmanager repeats every group each repeat_interval: wait for several more deliveries.
    seen = len(gateway.deliveries)
    wait_for("Alertmanager re-sends", lambda: len(gateway.deliveries) >= seen + 6, timeout=8)
    assert set(gateway.deliveries) == {200}, gateway.deliveries
    assert len(gateway.incidents()) == 3
    for incident in gateway.incidents():
        assert [e["kind"] for e in gateway.timeline(incident["id"])] == ["opened"]

    # Resolve one alert in Alertmanager: its resolved notification resolves that incident.
    am.resolve_alerts([ALERTS[0]])

    def host_down_status() -> str | None:
        current = {i["id"]: i["status"] for i in gateway.incidents()}
        return current[host_down["id"]] if current[host_down["id"]] == "resolved" else None

    wait_for("the HostDown incident resolved", host_down_status, timeout=8)
    after = {i["id"]: i for i in gateway.incidents()}
    assert len(after) == 3
    assert after[host_down["id"]]["resolved_at"] is not None
    assert {i["status"] for id_, i in after.items() if id_ != host_down["id"]} == {"new"}
    kinds = [(e["kind"], e["actor"]) for e in gateway.timeline(host_down["id"])]
    assert kinds == [("opened", "alertmanager"), ("resolved", "alertmanager")]
    assert set(gateway.deliveries) == {200}, gateway.deliveries


@pytest.mark.parametrize("token", ["not-the-token", None], ids=["wrong-token", "no-token"])
def test_alertmanager_with_a_wrong_token_opens_nothing(gateway, alertmanager_factory, token):
    am: Alertmanager = alertmanager_factory(
        gateway.webhook_url, token=token, group_wait="500ms", group_interval="1s"
    )
    am.post_alerts(ALERTS[:1])

    wait_for("the gateway's 401", lambda: 401 in gateway.deliveries, timeout=8)
    log = wait_for(
        "Alertmanager logging the 401",
        lambda: am.read_log() if "unexpected status code 401" in am.read_log() else None,
        timeout=8,
    )
    assert 'msg="Notify for alerts failed"' in log, log
    assert set(gateway.deliveries) == {401}, gateway.deliveries
    assert gateway.incidents() == []
