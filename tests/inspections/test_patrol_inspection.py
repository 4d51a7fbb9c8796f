"""Patrol inspection end to end: real node_exporter, Prometheus, HTTP and TLS servers and a
closed port; thresholds crossed and recovered through node_exporter's textfile collector."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from sqlmodel import Session, select

from itilflow import clock
from itilflow.dispatch.runner import Runner
from itilflow.flows.inspection import patrol_inspection
from itilflow.models import CheckResult, Incident, InspectionRun, get_timeline
from tests.inspections.conftest import FS_USED, Peers

pytestmark = pytest.mark.usefixtures("prefect_server")


async def inspect(group: str = "test") -> dict:
    state = await patrol_inspection(group=group, return_state=True)
    assert state.is_completed(), state.message
    return await state.result()


def results_of(rt, run_id: int) -> dict[tuple[str, str], CheckResult]:
    with Session(rt.engine) as session:
        rows = session.exec(select(CheckResult).where(CheckResult.run_id == run_id)).all()
    return {(row.target, row.check_name): row for row in rows}


def inspection_incidents(rt) -> dict[str, list[Incident]]:
    """Incidents by fingerprint, oldest first."""
    with Session(rt.engine) as session:
        rows = session.exec(
            select(Incident).where(Incident.source == "inspection").order_by(Incident.id)
        ).all()
    found: dict[str, list[Incident]] = {}
    for incident in rows:
        found.setdefault(incident.fingerprint or "", []).append(incident)
    return found


async def test_failures_open_one_incident_each_and_recovery_resolves(
    rt, client, peers: Peers
) -> None:
    peers.node.set_filesystem(used_percent=97.0)
    peers.node.set_failed_units(["backup.service"])
    peers.prometheus.wait_for(FS_USED, lambda used: used > 95)

    first = await inspect()
    results = results_of(rt, first["run_id"])
    status = {key: row.status for key, row in results.items()}
    assert status[("node-1", "node")] == "ok"
    assert status[("node-1", "node.filesystem")] == "critical"
    assert results[("node-1", "node.filesystem")].value == pytest.approx(97.0, abs=0.01)
    assert status[("node-1", "node.systemd")] == "critical"
    assert "backup.service" in results[("node-1", "node.systemd")].message
    assert status[("node-1", "node.cpu")] == "ok"  # recorded, not judged
    assert 0 <= (results[("node-1", "node.cpu")].value or 0) <= 100
    assert status[("node-1-prom", "disk")] == "critical"
    assert status[("web", "http")] == "ok"
    assert status[("tls-soon", "tls")] == "critical"
    assert results[("tls-soon", "tls")].value == pytest.approx(3.0, abs=0.1)
    # Unreachable targets are failed checks, tried twice; the run itself completed.
    for key in [("closed-port", "tcp"), ("dead-exporter", "node")]:
        assert status[key] == "error"
        assert results[key].attempts == 2
        assert "refused" in results[key].message

    opened = inspection_incidents(rt)
    assert sorted(opened) == [
        "inspection:closed-port:tcp",
        "inspection:node-1-prom:disk",
        "inspection:node-1:node.filesystem",
        "inspection:node-1:node.systemd",
        "inspection:tls-soon:tls",
    ]  # dead-exporter opens only on critical (its policy), not on error
    filesystem = opened["inspection:node-1:node.filesystem"][0]
    assert filesystem.ci_name == "db-1"
    assert filesystem.dedup_key == "inspection:node-1:node.filesystem#1"
    assert (filesystem.category, filesystem.impact) == ("hardware", "medium")

    # The runner starts the incident flow for each, as for any other incident.
    runner = Runner(rt.engine, concurrency=8, poll_seconds=0.05)
    await runner.run_until_idle(timeout=120)
    assert runner.failed == 0
    with Session(rt.engine) as session:
        stored = session.get(Incident, filesystem.id)
        assert stored is not None and stored.priority == "P3" and stored.group_name == "hardware"
        assert session.get(Incident, opened["inspection:tls-soon:tls"][0].id).group_name == (
            "security"
        )

    # The same failure again: the same incidents, nothing new.
    second = await inspect()
    assert set(second["incidents"].values()) == {"kept"}
    assert {k: [i.id for i in v] for k, v in inspection_incidents(rt).items()} == {
        k: [i.id for i in v] for k, v in opened.items()
    }

    # Recovery: the filesystem and the unit resolve; the PromQL check only notes it (policy).
    peers.node.set_filesystem(used_percent=50.0)
    peers.node.set_failed_units([])
    peers.prometheus.wait_for(FS_USED, lambda used: used < 60)
    third = await inspect()
    assert third["incidents"][filesystem.number] == "resolved"
    now = inspection_incidents(rt)
    assert now["inspection:node-1:node.filesystem"][0].status == "resolved"
    assert now["inspection:node-1:node.systemd"][0].status == "resolved"
    promql = now["inspection:node-1-prom:disk"][0]
    assert promql.status == "assigned"
    with Session(rt.engine) as session:
        notes = [e.message for e in get_timeline(session=session, incident_id=promql.id)]
    assert any("recovered" in note for note in notes)

    # It fills up again: a new occurrence is a new incident, not the resolved one.
    peers.node.set_filesystem(used_percent=97.0)
    fourth = await inspect()
    again = inspection_incidents(rt)["inspection:node-1:node.filesystem"]
    assert [i.status for i in again] == ["resolved", "new"]
    assert again[1].dedup_key == "inspection:node-1:node.filesystem#2"
    assert fourth["incidents"][again[1].number] == "opened"

    runner = Runner(rt.engine, concurrency=8, poll_seconds=0.05)
    await runner.run_until_idle(timeout=120)
    assert runner.failed == 0

    # Every run is kept, and the trend reads back through the API.
    with Session(rt.engine) as session:
        runs = session.exec(select(InspectionRun).order_by(InspectionRun.id)).all()
    assert [(r.group, r.critical >= 1, r.error) for r in runs] == [("test", True, 2)] * 4
    trend = client.get(
        "/api/inspections/targets/node-1/history", params={"check": "node.filesystem"}
    )
    assert trend.status_code == 200, trend.text
    points = trend.json()
    assert [p["status"] for p in points] == ["critical", "critical", "ok", "critical"]
    assert [round(p["value"]) for p in points] == [97, 97, 50, 97]
    assert points[0]["at"] < points[-1]["at"]
    assert points[-1]["incident_id"] == again[1].id
    latest = client.get("/api/inspections/targets/node-1/history", params={"limit": 2})
    assert len(latest.json()) == 2
    assert client.get("/api/inspections/targets/nothing/history").status_code == 404
    anonymous = client.get("/api/inspections/targets/node-1/history", headers={"Authorization": ""})
    assert anonymous.status_code == 401

    # Each run published a table of its results in the Prefect UI.
    async with get_client() as prefect:
        artifacts = await prefect.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["inspection-test"]))
        )
    assert len(artifacts) >= 4 and {a.type for a in artifacts} == {"table"}
    assert any("closed-port" in str(a.data) for a in artifacts)


async def test_fill_prediction_from_the_targets_own_history(rt, peers: Peers) -> None:
    peers.node.set_filesystem(used_percent=60.0)
    first = await inspect("fill")
    early = results_of(rt, first["run_id"])[("node-2", "node.filesystem_fill")]
    assert (early.status, early.message) == ("ok", "no prediction before results span 1h")

    clock.advance(timedelta(hours=1))
    peers.node.set_filesystem(used_percent=70.0)
    second = await inspect("fill")
    fill = results_of(rt, second["run_id"])[("node-2", "node.filesystem_fill")]
    # 10 points an hour from 70 %: full in 3 hours, under the 1-day critical level.
    assert fill.status == "critical"
    assert fill.value == pytest.approx(3.0, abs=0.05)
    assert fill.message == "/srv/data full in 3.0 h at the rate of the last 6h"
    assert results_of(rt, second["run_id"])[("node-2", "node.filesystem")].status == "ok"
    [incident] = inspection_incidents(rt)["inspection:node-2:node.filesystem_fill"]
    assert incident.status == "new"


async def test_an_unknown_group_fails_the_run_with_the_groups_it_knows(rt) -> None:
    state = await patrol_inspection(group="nope", return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match="unknown inspection group 'nope'.*fill, test"):
        await state.result()
