"""Debian's Prometheus scrapes a real gateway (uvicorn, on loopback) and the runner's endpoint,
with deploy/prometheus's alert rules loaded: both targets are up and the metrics arrive."""

from __future__ import annotations

import copy
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from itilflow.gateway.app import create_app
from itilflow.metrics import RUNNER_POLL, serve_runner_metrics
from tests.faults.gateway_support import RecordingChangeEngine, served
from tests.observability.test_gateway_metrics import FIRING
from tests.support.principals import bearer_of
from tests.support.smtp import free_port

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "itilflow-rules.yml"
WAIT = 60.0


@pytest.fixture
def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (Debian: prometheus)")
    return binary


@pytest.fixture
def runner_endpoint() -> Iterator[str]:
    port = free_port()
    server = serve_runner_metrics("127.0.0.1", port)
    assert server is not None
    RUNNER_POLL.set_to_current_time()
    yield f"127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


def start_prometheus(binary: str, folder: Path, targets: dict[str, str]) -> tuple[Any, str]:
    (folder / "itilflow-rules.yml").write_text(RULES.read_text())
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["itilflow-rules.yml"],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in targets.items()
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "prometheus.log").open("w"),
    )
    return process, f"http://127.0.0.1:{port}"


def until(what: str, check: Any, log: Path) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        try:
            found = check()
        except httpx.TransportError:
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, f"{what} within {WAIT:g} s; {log.read_text()[-2000:]}"
        time.sleep(0.5)


def query(api: httpx.Client, expression: str) -> list[dict[str, Any]]:
    answer = api.get("/api/v1/query", params={"query": expression}).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_prometheus_scrapes_the_gateway_and_the_runner(
    rt: Any, tmp_path: Path, prometheus_binary: str, runner_endpoint: str
) -> None:
    app = create_app(rt.settings, rt.policies, change_engine=RecordingChangeEngine())
    with served(app) as url:
        admin = bearer_of(rt.settings.api_token.get_secret_value())
        sent = httpx.post(f"{url}/api/alertmanager", json=copy.deepcopy(FIRING), headers=admin)
        assert sent.status_code == 200, sent.text
        targets = {
            "itilflow-gateway": url.removeprefix("http://"),
            "itilflow-runner": runner_endpoint,
        }
        process, prometheus = start_prometheus(prometheus_binary, tmp_path, targets)
        log = tmp_path / "prometheus.log"
        try:
            with httpx.Client(base_url=prometheus, timeout=5, trust_env=False) as api:

                def both_up() -> bool:
                    active = api.get("/api/v1/targets").json()["data"]["activeTargets"]
                    health = {t["labels"]["job"]: t["health"] for t in active}
                    return health == dict.fromkeys(targets, "up")

                until("both targets up", both_up, log)
                created = until(
                    "the alerts counter",
                    lambda: query(api, 'itilflow_alerts_total{outcome="created"}'),
                    log,
                )
                assert float(created[0]["value"][1]) >= len(FIRING["alerts"])
                assert created[0]["metric"]["job"] == "itilflow-gateway"
                opened = until(
                    "the open incidents", lambda: query(api, "itilflow_incidents_open"), log
                )
                assert sum(float(sample["value"][1]) for sample in opened) >= 1
                heartbeat = until(
                    "the runner's heartbeat",
                    lambda: query(api, "itilflow_runner_last_poll_timestamp_seconds"),
                    log,
                )
                assert heartbeat[0]["metric"]["job"] == "itilflow-runner"
                rules = api.get("/api/v1/rules").json()["data"]["groups"]
                assert len(rules[0]["rules"]) == 9
                # Evaluated before the first scrapes, `absent(up)` may have made them pending:
                # with both targets up they clear at the next evaluation.
                down = 'ALERTS{alertname=~"ItilflowGatewayDown|ItilflowRunnerDown"}'
                until("no down alert while both are up", lambda: not query(api, down), log)
        finally:
            process.terminate()
            process.wait(timeout=30)
