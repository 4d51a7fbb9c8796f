"""The gateway's /metrics: who may read it (loopback, the metrics token, an admin; refused
otherwise), the counts of requests and alerts, and the figures read from the database."""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlmodel import Session

from itilflow import clock
from itilflow.dispatch import runner
from itilflow.gateway import metrics as gateway_metrics
from itilflow.gateway.app import create_app
from itilflow.metrics import GATEWAY
from itilflow.models import Change, InspectionRun, session_scope
from tests.faults.gateway_support import RecordingChangeEngine
from tests.support.principals import as_person, bearer_of

PAYLOADS = Path(__file__).resolve().parents[1] / "support" / "alertmanager_payloads"
FIRING: dict[str, Any] = json.loads((PAYLOADS / "firing.json").read_text())
LOOPBACK = ("127.0.0.1", 40000)
METRICS_TOKEN = secrets.token_urlsafe(32)


@pytest.fixture
def app(rt: Any) -> Any:
    settings = rt.settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)})
    return create_app(settings, rt.policies, change_engine=RecordingChangeEngine())


@pytest.fixture
def local(app: Any) -> Iterator[TestClient]:
    with TestClient(app, client=LOOPBACK) as client:
        yield client


@pytest.fixture
def remote(app: Any) -> Iterator[TestClient]:
    with TestClient(app, client=("192.0.2.7", 40000)) as client:
        yield client


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def counted(name: str, **labels: str) -> float:
    return GATEWAY.get_sample_value(name, labels) or 0.0


def test_loopback_reads_metrics_without_a_token(local: TestClient) -> None:
    answer = local.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    found = samples(answer.text)
    assert value(found, "itilflow_database_metrics_up") == 1
    assert ("itilflow_trigger_lag_seconds", frozenset({("lane", "urgent"), ("flow", "open")})) in (
        found
    )
    assert value(found, "process_resident_memory_bytes") > 0


def test_refused_without_a_token_from_elsewhere_or_through_a_proxy(
    remote: TestClient, local: TestClient
) -> None:
    assert remote.get("/metrics").status_code == 401
    proxied = local.get("/metrics", headers={"X-Forwarded-For": "198.51.100.4"})
    assert proxied.status_code == 401, "a proxy on this host does not make its clients local"
    wrong = remote.get("/metrics", headers=bearer_of("not-" + METRICS_TOKEN))
    assert wrong.status_code == 401
    assert "itilflow_" not in wrong.text and "itilflow_" not in proxied.text


def test_refused_to_a_token_without_the_role_admin(rt: Any, remote: TestClient) -> None:
    answer = remote.get("/metrics", headers=as_person(rt, "lin", ["agent", "reporter"]))
    assert answer.status_code == 403
    assert "role admin" in answer.json()["detail"]


def test_the_metrics_token_and_an_admin_read_from_elsewhere(rt: Any, remote: TestClient) -> None:
    assert remote.get("/metrics", headers=bearer_of(METRICS_TOKEN)).status_code == 200
    admin = bearer_of(rt.settings.api_token.get_secret_value())
    assert remote.get("/metrics", headers=admin).status_code == 200


def test_the_metrics_token_opens_nothing_else(remote: TestClient) -> None:
    assert remote.get("/api/incidents", headers=bearer_of(METRICS_TOKEN)).status_code == 401


def test_requests_and_alerts_are_counted_by_outcome(rt: Any, local: TestClient) -> None:
    route = {"route": "/api/alertmanager", "method": "POST"}
    before = {
        "accepted": counted("itilflow_gateway_requests_total", **route, outcome="accepted"),
        "unauthenticated": counted(
            "itilflow_gateway_requests_total", **route, outcome="unauthenticated"
        ),
        "created": counted("itilflow_alerts_total", outcome="created"),
        "duplicate": counted("itilflow_alerts_total", outcome="duplicate"),
    }
    admin = bearer_of(rt.settings.api_token.get_secret_value())
    payload = copy.deepcopy(FIRING)
    assert local.post("/api/alertmanager", json=payload, headers=admin).status_code == 200
    assert local.post("/api/alertmanager", json=payload, headers=admin).status_code == 200
    assert local.post("/api/alertmanager", json=payload).status_code == 401

    def delta(key: str, name: str, **labels: str) -> float:
        return counted(name, **labels) - before[key]

    assert delta("accepted", "itilflow_gateway_requests_total", **route, outcome="accepted") == 2
    unauthenticated = delta(
        "unauthenticated", "itilflow_gateway_requests_total", **route, outcome="unauthenticated"
    )
    assert unauthenticated == 1
    alerts = len(payload["alerts"])
    assert delta("created", "itilflow_alerts_total", outcome="created") == alerts
    assert delta("duplicate", "itilflow_alerts_total", outcome="duplicate") == alerts
    # The 404 of a path no route has is counted under one label, not one per path.
    local.get(f"/no/such/{secrets.token_hex(4)}")
    assert counted(
        "itilflow_gateway_requests_total", route="unmatched", method="GET", outcome="not_found"
    )


@pytest.mark.postgres
def test_open_incidents_and_due_triggers_come_from_the_database(rt: Any, local: TestClient) -> None:
    admin = bearer_of(rt.settings.api_token.get_secret_value())
    for n, priority in enumerate(["P1", "P3", "P3"]):
        answer = local.post(
            "/api/incidents",
            json={"title": f"down {n}", "priority": priority, "category": "software"},
            headers=admin,
        )
        assert answer.status_code == 201, answer.text
    with session_scope(rt.engine) as session:
        session.add(Change(title="patch", status="rolled_back"))
        session.add(InspectionRun(group="web", ok=3, critical=1))
    clock.advance(timedelta(seconds=90))  # the open triggers are due for 90 s, nobody ran them

    found = samples(local.get("/metrics").text)
    assert value(found, "itilflow_incidents_open", priority="P1", status="new") == 1
    assert value(found, "itilflow_incidents_open", priority="P3", status="new") == 2
    assert value(found, "itilflow_triggers_due", lane="urgent", flow="open") == 1
    assert value(found, "itilflow_triggers_due", lane="normal", flow="open") == 2
    assert value(found, "itilflow_trigger_lag_seconds", lane="urgent", flow="open") >= 90
    assert value(found, "itilflow_trigger_lag_seconds", lane="urgent", flow="notify") == 0
    assert value(found, "itilflow_changes", status="rolled_back") == 1
    assert value(found, "itilflow_inspection_checks", group="web", status="critical") == 1
    assert value(found, "itilflow_inspection_last_run_timestamp_seconds", group="web") > 0


@pytest.mark.postgres
def test_the_database_is_read_once_per_cache_period(rt: Any) -> None:
    figures = gateway_metrics.DatabaseFigures(rt.engine, ttl=60)
    first = {m.name: m for m in figures.collect()}
    with session_scope(rt.engine) as session:
        session.add(Change(title="new", status="submitted"))
    again = {m.name: m for m in figures.collect()}
    assert again["itilflow_changes"] is first["itilflow_changes"], "served from the cache"
    fresh = gateway_metrics.DatabaseFigures(rt.engine, ttl=0)
    changes = {m.name: m for m in fresh.collect()}["itilflow_changes"]
    assert {s.labels["status"]: s.value for s in changes.samples}.get("submitted") == 1


def test_a_database_that_does_not_answer_is_a_zero_not_a_failed_scrape(
    rt: Any, tmp_path: Path
) -> None:
    from sqlalchemy import create_engine

    missing = create_engine(f"sqlite:///{tmp_path}/nothing-here/db.sqlite")
    families = {m.name: m for m in gateway_metrics.DatabaseFigures(missing).collect()}
    assert list(families) == ["itilflow_database_metrics_up"]
    assert families["itilflow_database_metrics_up"].samples[0].value == 0


def test_the_lanes_are_the_runners() -> None:
    assert gateway_metrics.URGENT_RANK == runner.URGENT_RANK
    assert {*gateway_metrics.FLOWS, "timers"} == set(runner.LANES)


@pytest.mark.postgres
def test_open_incidents_is_one_grouped_query(rt: Any) -> None:
    from sqlalchemy import event

    statements: list[str] = []
    engine = gateway_metrics.side_engine(rt.engine)
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with Session(engine) as session:
        gateway_metrics.read_figures(session, clock.now())
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 4, selects  # incidents, triggers, changes, inspections
