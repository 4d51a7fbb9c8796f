"""Self-test of tests/support/alertmanager.py against the real Alertmanager binary.

A stdlib HTTP server plays the webhook receiver.  The firing/resolved payloads it receives are
compared (field by field) with the fixtures in tests/support/alertmanager_payloads/; run with
``ITILFLOW_UPDATE_AM_PAYLOADS=1`` to re-capture those fixtures from the real Alertmanager.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support import alertmanager as am_support

Alertmanager = am_support.Alertmanager
make_alert = am_support.make_alert
alertmanager_factory = am_support.alertmanager_factory  # the pytest fixture

PAYLOAD_DIR = Path(__file__).resolve().parents[1] / "support" / "alertmanager_payloads"
UPDATE_PAYLOADS = os.environ.get("ITILFLOW_UPDATE_AM_PAYLOADS") == "1"
TOKEN = "itilflow-test-token"


class WebhookSink:
    """Threaded stdlib HTTP server recording every POST (headers + JSON body)."""

    def __init__(self) -> None:
        self.requests: queue.Queue[dict[str, Any]] = queue.Queue()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib naming
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.requests.put(
                    {
                        "received_at": time.monotonic(),
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": json.loads(raw),
                    }
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def wait_for(self, status: str, timeout: float) -> dict[str, Any]:
        """Next request whose payload has ``status`` (others, e.g. repeats, are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {status!r} webhook within {timeout}s")
            try:
                request = self.requests.get(timeout=remaining)
            except queue.Empty:
                continue
            if request["body"].get("status") == status:
                return request

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def webhook_sink() -> Iterator[WebhookSink]:
    sink = WebhookSink()
    yield sink
    sink.close()


def _shape(value: Any) -> Any:
    """Structure of a payload: dict keys (recursively) / first list item, no values."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def _check_fixture(name: str, payload: dict[str, Any]) -> None:
    path = PAYLOAD_DIR / name
    if UPDATE_PAYLOADS:
        path.write_text(json.dumps(payload, indent=2) + "\n")
        return
    saved = json.loads(path.read_text())
    assert _shape(payload) == _shape(saved), f"{name} no longer matches Alertmanager's payload"


def test_firing_then_resolved_reaches_webhook(webhook_sink: WebhookSink) -> None:
    alert = make_alert(
        "HostDown",
        instance="web-01:9100",
        labels={"job": "node", "severity": "critical", "service": "web"},
        annotations={
            "summary": "web-01:9100 is down",
            "description": "Node exporter on web-01:9100 has not answered for 1 minute.",
            "runbook_url": "https://runbooks.example/HostDown",
        },
    )
    webhook_url = f"{webhook_sink.url}/api/webhooks/alertmanager"
    with Alertmanager(webhook_url, TOKEN, group_wait="1s", group_interval="1s") as am:
        assert am.status()["cluster"]["status"] == "disabled"

        posted_at = time.monotonic()
        sent = am.post_alerts([alert])
        firing = webhook_sink.wait_for("firing", timeout=10)
        firing_delay = firing["received_at"] - posted_at

        resolved_at = time.monotonic()
        am.resolve_alerts([alert])
        resolved = webhook_sink.wait_for("resolved", timeout=10)
        resolved_delay = resolved["received_at"] - resolved_at

    assert not am.running
    assert firing_delay < 5, firing_delay
    assert resolved_delay < 5, resolved_delay

    for request in (firing, resolved):
        assert request["path"] == "/api/webhooks/alertmanager"
        assert request["headers"]["authorization"] == f"Bearer {TOKEN}"
        assert request["headers"]["content-type"] == "application/json"
        assert request["headers"]["user-agent"].startswith("Alertmanager/")

    body = firing["body"]
    assert body["version"] == "4"
    assert body["status"] == "firing"
    assert body["receiver"] == "itilflow-webhook"
    assert body["truncatedAlerts"] == 0
    assert body["groupLabels"] == {"alertname": "HostDown", "instance": "web-01:9100"}
    assert body["commonLabels"] == alert["labels"]
    assert body["commonAnnotations"] == alert["annotations"]
    assert body["externalURL"] == am.url
    assert body["groupKey"] == '{}:{alertname="HostDown", instance="web-01:9100"}'
    [fired] = body["alerts"]
    assert fired["status"] == "firing"
    assert fired["labels"] == alert["labels"]
    assert fired["annotations"] == alert["annotations"]
    assert fired["generatorURL"] == alert["generatorURL"]
    assert len(fired["fingerprint"]) == 16
    assert fired["startsAt"].startswith(sent[0]["startsAt"][:19])
    assert fired["endsAt"] == "0001-01-01T00:00:00Z"

    body = resolved["body"]
    assert body["version"] == "4"
    assert body["status"] == "resolved"
    assert body["groupKey"] == firing["body"]["groupKey"]
    [gone] = body["alerts"]
    assert gone["status"] == "resolved"
    assert gone["fingerprint"] == fired["fingerprint"]
    assert gone["startsAt"] == fired["startsAt"]
    assert gone["endsAt"] > gone["startsAt"]

    _check_fixture("firing.json", firing["body"])
    _check_fixture("resolved.json", resolved["body"])


def test_factory_fixture_stops_instances(
    alertmanager_factory: Any, webhook_sink: WebhookSink
) -> None:
    am = alertmanager_factory(webhook_sink.url, group_by=["..."])
    assert am.running
    assert am.get_alerts() == []
    assert "http_config" not in am.config["receivers"][0]["webhook_configs"][0]
    am.stop()
    assert not am.running
    am.stop()  # idempotent


def test_config_generation() -> None:
    am = Alertmanager(
        "http://127.0.0.1:1/hook",
        "tok",
        group_by=["alertname"],
        group_wait=0.5,
        group_interval=2,
        repeat_interval="4h",
    )
    route = am.config["route"]
    assert route["group_by"] == ["alertname"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "500ms",
        "2s",
        "4h",
    )
    [webhook] = am.config["receivers"][0]["webhook_configs"]
    assert webhook == {
        "url": "http://127.0.0.1:1/hook",
        "send_resolved": True,
        "max_alerts": 0,
        "http_config": {"authorization": {"type": "Bearer", "credentials": "tok"}},
    }


def test_missing_binary_error_mentions_install_script(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(am_support.BINARY_ENV, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(am_support.AlertmanagerNotInstalled, match="install-test-deps.sh"):
        Alertmanager("http://127.0.0.1:1/hook").start()
