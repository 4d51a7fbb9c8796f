"""The checks on their own (no engine): answers, thresholds, retries and no answers."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from itilflow.policies.inspection import InspectionPolicy
from itilflow.tasks.inspection.node_exporter import parse_node_metrics
from itilflow.tasks.inspection.run_inspection_checks import inspect_group
from tests.inspections.servers import WebServer, closed_port, tls_server

EXPOSITION = """\
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 100.5
node_cpu_seconds_total{cpu="0",mode="user"} 20
node_cpu_seconds_total{cpu="1",mode="idle"} 90
# HELP node_load5 5m load average.
# TYPE node_load5 gauge
node_load5 1.25
# HELP node_network_receive_bytes_total Network device statistic receive_bytes.
# TYPE node_network_receive_bytes_total counter
node_network_receive_bytes_total{device="lo"} 1.2e+06
node_systemd_unit_state{name="a \\"b\\".service",state="failed",type="simple"} 1
"""


def policy(**targets: dict) -> InspectionPolicy:
    return InspectionPolicy.model_validate(
        {
            "timeout": "2s",
            "retries": 2,
            "retry_delay": "0",
            "groups": {"g": {"schedule": "* * * * *", "targets": targets}},
        }
    )


async def run(inspection: InspectionPolicy) -> dict[tuple[str, str], dict]:
    results = await inspect_group(inspection, inspection.groups["g"])
    return {(r["target"], r["check_name"]): r for r in results}


def test_parse_node_metrics_keeps_what_the_checks_read() -> None:
    samples = parse_node_metrics(EXPOSITION)
    assert sorted(samples) == ["node_cpu_seconds_total", "node_load5", "node_systemd_unit_state"]
    assert samples["node_cpu_seconds_total"][0] == ({"cpu": "0", "mode": "idle"}, 100.5)
    assert samples["node_load5"] == [({}, 1.25)]
    assert samples["node_systemd_unit_state"][0][0]["name"] == 'a "b".service'


@pytest.fixture
def web():
    server = WebServer()
    yield server
    server.stop()


async def test_http_status_text_and_latency(web: WebServer) -> None:
    checks = {
        "ok": {"checks": [{"type": "http", "url": web.url, "expect_text": "OK"}]},
        "text": {"checks": [{"type": "http", "url": web.url, "expect_text": "ready"}]},
        "status": {"checks": [{"type": "http", "url": web.url, "status": 204}]},
        "slow": {"checks": [{"type": "http", "url": web.url, "max_latency": "0"}]},
    }
    found = await run(policy(**checks))
    assert found[("ok", "http")]["status"] == "ok"
    assert found[("ok", "http")]["unit"] == "s"
    assert found[("text", "http")]["status"] == "critical"
    assert found[("text", "http")]["message"] == "'ready' not in the response"
    assert found[("status", "http")]["message"] == "HTTP 200, expected 204"
    assert found[("slow", "http")]["status"] == "warning"
    assert all(r["attempts"] == 1 for r in found.values())  # answers are not retried


async def test_no_answer_is_retried_then_an_error() -> None:
    port = closed_port()
    found = await run(
        policy(
            tcp={"checks": [{"type": "tcp", "host": "127.0.0.1", "port": port}]},
            web={"checks": [{"type": "http", "url": f"http://127.0.0.1:{port}/", "retries": 0}]},
        )
    )
    assert found[("tcp", "tcp")]["status"] == "error"
    assert found[("tcp", "tcp")]["attempts"] == 3
    assert found[("web", "http")]["status"] == "error"
    assert found[("web", "http")]["attempts"] == 1


async def test_tls_expiry_trust_and_expired(tmp_path: Path) -> None:
    fresh, fresh_ca = tls_server(tmp_path / "fresh", days=60)
    soon, soon_ca = tls_server(tmp_path / "soon", days=10)
    old, _ = tls_server(tmp_path / "old", days=-1)
    try:

        def tls(server: WebServer, **extra: object) -> dict:
            return {"checks": [{"type": "tls", "host": "127.0.0.1", "port": server.port, **extra}]}

        found = await run(
            policy(
                fresh=tls(fresh, ca_file=str(fresh_ca)),
                soon=tls(soon, ca_file=str(soon_ca)),
                untrusted=tls(fresh),
                unchecked=tls(fresh, verify=False),
                expired=tls(old, verify=False),
            )
        )
    finally:
        for server in (fresh, soon, old):
            server.stop()
    assert found[("fresh", "tls")]["status"] == "ok"
    assert found[("fresh", "tls")]["value"] == pytest.approx(60, abs=0.1)
    assert found[("soon", "tls")]["status"] == "warning"  # 10 days: under 21, over 7
    assert found[("untrusted", "tls")]["status"] == "critical"
    assert "not trusted" in found[("untrusted", "tls")]["message"]
    assert found[("unchecked", "tls")]["status"] == "ok"
    assert found[("expired", "tls")]["status"] == "critical"
    assert "expired" in found[("expired", "tls")]["message"]


async def test_promql_answers(web: WebServer) -> None:
    def answer(result: list, kind: str = "vector") -> bytes:
        return json.dumps(
            {"status": "success", "data": {"resultType": kind, "result": result}}
        ).encode()

    check = {
        "type": "promql",
        "url": web.url.removesuffix("/health"),
        "query": "predict_linear(node_filesystem_avail_bytes[6h], 86400)",
        "direction": "below",
        "warning": 1e9,
        "critical": 0,
    }
    web.body = answer(
        [
            {"metric": {"mountpoint": "/"}, "value": [0, "5e9"]},
            {"metric": {"mountpoint": "/data"}, "value": [0, "-2e9"]},
        ]
    )
    found = await run(policy(p={"checks": [check]}))
    result = found[("p", "promql")]
    assert (result["status"], result["value"]) == ("critical", -2e9)
    assert result["message"].startswith("mountpoint=/data: -2e+09 (worst of 2 series)")

    web.body = answer([])
    found = await run(policy(p={"checks": [{**check, "on_empty": "warning"}]}))
    assert found[("p", "promql")]["status"] == "warning"
    assert found[("p", "promql")]["message"] == "no series"

    web.status, web.body = 400, json.dumps({"status": "error", "error": "parse error"}).encode()
    found = await run(policy(p={"checks": [check]}))
    assert found[("p", "promql")]["status"] == "error"
    assert "parse error" in found[("p", "promql")]["message"]


async def test_a_silent_server_times_out_per_attempt() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections are queued, never answered
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        check = {"type": "http", "url": url, "timeout": "1s", "retries": 1}
        started = time.perf_counter()
        found = await run(policy(silent={"checks": [check]}))
        elapsed = time.perf_counter() - started
    finally:
        silent.close()
    result = found[("silent", "http")]
    assert (result["status"], result["attempts"]) == ("error", 2)
    assert result["message"] == "no answer within 1s"
    assert 2 <= elapsed < 4
