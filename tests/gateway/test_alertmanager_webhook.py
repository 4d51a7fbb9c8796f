"""Alertmanager's webhook, fed the payloads captured from a real Alertmanager 0.25: one incident
per alert occurrence, repeats and duplicate deliveries land on it, a resolution resolves or
annotates it as the routing policy says, and a refused request changes nothing."""

from __future__ import annotations

import copy
import json
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from itilflow.gateway.app import create_app
from itilflow.models import FlowTrigger, Incident, IncidentStatus, TimelineEntry
from itilflow.policies import decide_priority, default_policy_dir, load_policies
from itilflow.services import incidents

PAYLOADS = Path(__file__).resolve().parents[1] / "support" / "alertmanager_payloads"
FIRING: dict[str, Any] = json.loads((PAYLOADS / "firing.json").read_text())
RESOLVED: dict[str, Any] = json.loads((PAYLOADS / "resolved.json").read_text())
FINGERPRINT = "d4177250bc20cc9f"
URL = "/api/alertmanager"


def firing() -> dict[str, Any]:
    return copy.deepcopy(FIRING)


def resolved() -> dict[str, Any]:
    return copy.deepcopy(RESOLVED)


def counts(rt: Any) -> tuple[int, int, int]:
    with Session(rt.engine) as session:
        return tuple(  # type: ignore[return-value]
            session.exec(select(func.count()).select_from(table)).one()
            for table in (Incident, TimelineEntry, FlowTrigger)
        )


def incident_rows(rt: Any) -> list[Incident]:
    with Session(rt.engine) as session:
        return list(session.exec(select(Incident).order_by(Incident.id)))


def timeline(rt: Any, incident_id: int) -> list[TimelineEntry]:
    with Session(rt.engine) as session:
        statement = (
            select(TimelineEntry)
            .where(TimelineEntry.incident_id == incident_id)
            .order_by(TimelineEntry.id)
        )
        return list(session.exec(statement))


def triggers(rt: Any, incident_id: int) -> list[str]:
    with Session(rt.engine) as session:
        rows = session.exec(select(FlowTrigger).where(FlowTrigger.incident_id == incident_id))
        return sorted(trigger.kind for trigger in rows)


def outcomes(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [alert["outcome"] for alert in response.json()["alerts"]]


def send(client: TestClient, payload: dict[str, Any]) -> Any:
    return client.post(URL, json=payload)


def alert_payload(alerts: list[dict[str, Any]], status: str = "firing") -> dict[str, Any]:
    payload = firing()
    payload["status"] = status
    payload["alerts"] = alerts
    return payload


def an_alert(
    fingerprint: str, *, status: str = "firing", starts_at: str | None = None, **labels: str
) -> dict[str, Any]:
    alert = firing()["alerts"][0]
    alert["fingerprint"] = fingerprint
    alert["status"] = status
    alert["labels"].update(labels)
    if starts_at is not None:
        alert["startsAt"] = starts_at
    if status == "resolved":
        alert["endsAt"] = "2026-11-23T18:00:00Z"
    return alert


# --------------------------------------------------------------------------- firing


def test_firing_alert_opens_one_incident(client, rt):
    response = send(client, firing())
    assert response.status_code == 200, response.text
    [result] = response.json()["alerts"]
    assert result["outcome"] == "created"
    assert result["fingerprint"] == FINGERPRINT
    assert result["number"] == f"INC-{result['id']:06d}"
    assert result["url"].endswith(f"/api/incidents/{result['id']}")
    assert counts(rt) == (1, 1, 1)

    [incident] = incident_rows(rt)
    assert incident.id == result["id"]
    assert incident.source == "alertmanager"
    assert incident.fingerprint == FINGERPRINT
    assert incident.title == "web-01:9100 is down"  # annotations.summary
    assert incident.description == "Node exporter on web-01:9100 has not answered for 1 minute."
    assert incident.ci_name == "web-01:9100"  # labels.instance
    assert incident.status == IncidentStatus.new
    # routing.yaml: severity critical -> urgency high; no impact label -> default_impact medium.
    assert (incident.impact, incident.urgency) == ("medium", "high")
    # The priority is left to the incident flow, which derives it from impact x urgency.
    assert incident.priority is None
    assert incidents.classify(incident, rt.policies) == "P2"
    assert decide_priority(rt.policies.priority, "medium", "high") == "P2"
    assert incident.labels["severity"] == "critical"
    assert incident.labels["annotation:runbook_url"] == "https://runbooks.example/HostDown"
    assert incident.labels["generatorURL"] == FIRING["alerts"][0]["generatorURL"]
    assert incident.dedup_key is not None and FINGERPRINT in incident.dedup_key

    [opened] = timeline(rt, incident.id)
    assert (opened.kind, opened.actor) == ("opened", "alertmanager")
    assert triggers(rt, incident.id) == ["open"]

    shown = client.get(f"/api/incidents/{incident.id}").json()
    assert shown["source"] == "alertmanager"
    assert shown["fingerprint"] == FINGERPRINT
    assert (shown["ci"], shown["impact"], shown["urgency"]) == ("web-01:9100", "medium", "high")
    assert client.get(f"/api/incidents/{incident.id}/sla").json()["priority"] == "P2"


def test_resends_and_duplicate_deliveries_create_nothing_new(client, rt):
    first = send(client, firing()).json()["alerts"][0]
    assert first["outcome"] == "created"
    after_first = counts(rt)
    assert after_first == (1, 1, 1)

    # Alertmanager re-sends the group at every group_interval / repeat_interval.
    for _ in range(5):
        again = send(client, firing()).json()["alerts"][0]
        assert again["outcome"] == "duplicate"
        assert (again["id"], again["number"]) == (first["id"], first["number"])

    # A second replica of an HA pair delivers the same alert: another externalURL, receiver
    # and group key, and annotations since edited in the alerting rule.
    other_replica = firing()
    other_replica["externalURL"] = "http://alertmanager-2.example:9093"
    other_replica["receiver"] = "itilflow-webhook-ha"
    other_replica["groupKey"] = '{}/{severity="critical"}:{alertname="HostDown"}'
    other_replica["alerts"][0]["annotations"]["summary"] = "web-01 unreachable"
    assert outcomes(send(client, other_replica)) == ["duplicate"]

    # The same alert twice in one delivery.
    twice = firing()
    twice["alerts"] = twice["alerts"] * 2
    assert outcomes(send(client, twice)) == ["duplicate", "duplicate"]

    assert counts(rt) == after_first
    [incident] = incident_rows(rt)
    assert incident.title == "web-01:9100 is down"


def test_the_same_alert_twice_in_its_first_delivery_opens_one_incident(client, rt):
    twice = firing()
    twice["alerts"] = twice["alerts"] * 2
    assert outcomes(send(client, twice)) == ["created", "duplicate"]
    assert counts(rt) == (1, 1, 1)


def test_concurrent_deliveries_of_one_alert_open_one_incident(client, rt):
    results: list[Any] = []
    barrier = threading.Barrier(6)

    def deliver() -> None:
        barrier.wait()
        results.append(send(client, firing()))

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 6
    seen = sorted(outcome for response in results for outcome in outcomes(response))
    assert seen == ["created"] + ["duplicate"] * 5
    assert len({response.json()["alerts"][0]["id"] for response in results}) == 1
    assert counts(rt) == (1, 1, 1)


def test_a_new_occurrence_of_the_same_alert_opens_a_second_incident(client, rt):
    first = send(client, firing()).json()["alerts"][0]
    later = firing()
    later["alerts"][0]["startsAt"] = "2026-11-24T08:00:00.125Z"  # it fired again next morning
    second = send(client, later).json()["alerts"][0]
    assert second["outcome"] == "created"
    assert second["id"] != first["id"]
    assert counts(rt) == (2, 2, 2)
    assert [i.fingerprint for i in incident_rows(rt)] == [FINGERPRINT, FINGERPRINT]
    assert outcomes(send(client, later)) == ["duplicate"]

    # The first occurrence's resolution resolves the first incident only.
    assert outcomes(send(client, resolved())) == ["resolved"]
    statuses = {i.id: i.status for i in incident_rows(rt)}
    assert statuses == {first["id"]: IncidentStatus.resolved, second["id"]: IncidentStatus.new}


# --------------------------------------------------------------------------- resolved


def test_resolved_alert_resolves_its_incident(client, rt):
    incident_id = send(client, firing()).json()["alerts"][0]["id"]
    response = send(client, resolved())
    [result] = response.json()["alerts"]
    assert result["outcome"] == "resolved"
    assert result["id"] == incident_id

    [incident] = incident_rows(rt)
    assert incident.status == IncidentStatus.resolved
    assert incident.resolved_at is not None
    entries = timeline(rt, incident_id)
    assert [(e.kind, e.actor) for e in entries] == [
        ("opened", "alertmanager"),
        ("resolved", "alertmanager"),
    ]
    assert "2026-11-23T17:43:44.889" in entries[-1].message  # the alert's endsAt
    assert triggers(rt, incident_id) == ["open", "resolved"]  # the survey goes out
    shown = client.get(f"/api/incidents/{incident_id}").json()
    assert shown["status"] == "resolved"

    # Alertmanager repeats the resolved notification: nothing changes.
    before = counts(rt)
    for _ in range(3):
        assert outcomes(send(client, resolved())) == ["duplicate"]
    assert counts(rt) == before
    # ... and a late re-send of the firing notification does not reopen or duplicate it.
    assert outcomes(send(client, firing())) == ["duplicate"]
    assert counts(rt) == before
    assert incident_rows(rt)[0].status == IncidentStatus.resolved


def test_resolved_alert_of_an_incident_on_hold_only_annotates_it(client, rt):
    number = send(client, firing()).json()["alerts"][0]["number"]
    held = client.post(f"/api/incidents/{number}/hold", json={"note": "waiting for the vendor"})
    assert held.status_code == 200, held.text
    assert outcomes(send(client, resolved())) == ["annotated"]
    [incident] = incident_rows(rt)
    assert incident.status == IncidentStatus.on_hold
    assert [e.kind for e in timeline(rt, incident.id)] == ["opened", "on_hold", "alert_resolved"]


@pytest.fixture
def annotate_client(rt, tmp_path: Path) -> Iterator[TestClient]:
    """A gateway on the same database whose routing.yaml says `resolved_action: annotate`."""
    directory = tmp_path / "policies"
    shutil.copytree(str(default_policy_dir()), directory)
    routing = directory / "routing.yaml"
    text = routing.read_text()
    assert "resolved_action: resolve\n" in text
    routing.write_text(text.replace("resolved_action: resolve\n", "resolved_action: annotate\n"))
    policies = load_policies(directory)
    assert policies.routing.alertmanager.resolved_action == "annotate"
    with TestClient(create_app(rt.settings, policies)) as test_client:
        assert rt.settings.api_token is not None
        token = rt.settings.api_token.get_secret_value()
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def test_resolved_alert_only_annotates_under_the_annotate_policy(annotate_client, rt):
    incident_id = send(annotate_client, firing()).json()["alerts"][0]["id"]
    [result] = send(annotate_client, resolved()).json()["alerts"]
    assert (result["outcome"], result["id"]) == ("annotated", incident_id)
    for _ in range(3):
        assert outcomes(send(annotate_client, resolved())) == ["duplicate"]

    [incident] = incident_rows(rt)
    assert incident.status == IncidentStatus.new
    assert incident.resolved_at is None
    entries = timeline(rt, incident_id)
    assert [(e.kind, e.actor) for e in entries] == [
        ("opened", "alertmanager"),
        ("alert_resolved", "alertmanager"),
    ]
    assert "stays open" in entries[-1].message
    assert triggers(rt, incident_id) == ["open"]
    assert counts(rt) == (1, 2, 1)


def test_resolved_alert_never_seen_firing_is_ignored(client, rt):
    before = counts(rt)
    unknown = resolved()
    unknown["alerts"][0]["fingerprint"] = "0123456789abcdef"
    [result] = send(client, unknown).json()["alerts"]
    assert result == {
        "fingerprint": "0123456789abcdef",
        "outcome": "ignored",
        "id": None,
        "number": None,
        "url": None,
    }
    # The known fingerprint but another occurrence (startsAt) is unknown too.
    other_occurrence = resolved()
    other_occurrence["alerts"][0]["startsAt"] = "2026-11-20T00:00:00Z"
    assert outcomes(send(client, other_occurrence)) == ["ignored"]
    assert counts(rt) == before == (0, 0, 0)


# --------------------------------------------------------------------------- many alerts


def test_many_alerts_in_one_webhook(client, rt):
    alerts = [an_alert(f"{n:016x}", instance=f"web-{n:02d}:9100") for n in range(50)]
    response = send(client, alert_payload(alerts))
    results = response.json()["alerts"]
    assert [r["outcome"] for r in results] == ["created"] * 50
    assert [r["fingerprint"] for r in results] == [a["fingerprint"] for a in alerts]
    assert len({r["id"] for r in results}) == 50
    assert counts(rt) == (50, 50, 50)
    assert {i.ci_name for i in incident_rows(rt)} == {f"web-{n:02d}:9100" for n in range(50)}

    # The whole group again, now with ten of them resolved and one unknown resolved alert.
    again = [
        an_alert(a["fingerprint"], status="resolved" if n < 10 else "firing")
        for n, a in enumerate(alerts)
    ]
    again.append(an_alert("ffffffffffffffff", status="resolved"))
    mixed = outcomes(send(client, alert_payload(again)))
    assert mixed == ["resolved"] * 10 + ["duplicate"] * 40 + ["ignored"]
    assert counts(rt) == (50, 60, 60)
    statuses = [i.status for i in incident_rows(rt)]
    assert statuses.count(IncidentStatus.resolved) == 10


# --------------------------------------------------------------------------- mapping


@pytest.mark.parametrize(
    ("labels", "impact", "urgency", "category"),
    [
        ({"severity": "warning"}, "medium", "medium", None),
        ({"severity": "info"}, "medium", "low", None),
        ({"severity": "CRITICAL", "impact": "High"}, "high", "high", None),
        ({"severity": "page-me-now"}, "medium", "medium", None),
        ({"severity": "critical", "impact": "huge"}, "medium", "high", None),
        ({"severity": "critical", "category": "network"}, "medium", "high", "network"),
    ],
    ids=["warning", "info", "case-insensitive", "unknown-severity", "unknown-impact", "category"],
)
def test_labels_map_to_impact_urgency_and_category(client, rt, labels, impact, urgency, category):
    payload = firing()
    payload["alerts"][0]["labels"].update(labels)
    assert outcomes(send(client, payload)) == ["created"]
    [incident] = incident_rows(rt)
    assert (incident.impact, incident.urgency, incident.category) == (impact, urgency, category)


def test_title_falls_back_to_alertname_and_instance_and_ci_label_wins(client, rt):
    payload = firing()
    alert = payload["alerts"][0]
    del alert["annotations"]["summary"]
    alert["labels"]["ci"] = "shop-web"
    assert outcomes(send(client, payload)) == ["created"]
    [incident] = incident_rows(rt)
    assert incident.title == "HostDown on web-01:9100"
    assert incident.ci_name == "shop-web"


def test_long_texts_are_cut_to_the_column_sizes(client, rt):
    payload = firing()
    alert = payload["alerts"][0]
    alert["annotations"]["summary"] = "s" * 1000
    alert["annotations"]["description"] = "d" * 30_000
    alert["labels"]["instance"] = "i" * 500
    assert outcomes(send(client, payload)) == ["created"]
    [incident] = incident_rows(rt)
    assert incident.title == "s" * 300
    assert incident.description == "d" * 20_000
    assert incident.ci_name == "i" * 200


def test_html_in_the_summary_is_stored_verbatim(client, rt):
    summary = '<script>alert("x")</script> <b>web-01</b> & "db" down'
    description = "<img src=x onerror=alert(1)> latency > 5s"
    payload = firing()
    payload["alerts"][0]["annotations"].update(summary=summary, description=description)
    incident_id = send(client, payload).json()["alerts"][0]["id"]
    [incident] = incident_rows(rt)
    assert (incident.title, incident.description) == (summary, description)
    shown = client.get(f"/api/incidents/{incident_id}").json()
    assert (shown["title"], shown["description"]) == (summary, description)


# --------------------------------------------------------------------------- refused


def _without(key: str) -> dict[str, Any]:
    payload = firing()
    del payload[key]
    return payload


def _with(**changes: Any) -> dict[str, Any]:
    payload = firing()
    payload.update(changes)
    return payload


def _second_alert(**changes: Any) -> dict[str, Any]:
    """A valid first alert and a bad second one: the whole delivery is refused."""
    payload = firing()
    bad = an_alert("00000000000000aa", instance="web-02:9100")
    for key, value in changes.items():
        if value is None:
            del bad[key]
        else:
            bad[key] = value
    payload["alerts"].append(bad)
    return payload


def _post_json(payload: dict[str, Any], **headers: str) -> Any:
    return lambda c: c.post(URL, json=payload, headers=headers)


@pytest.mark.parametrize(
    ("send_bad", "status", "says"),
    [
        (_post_json(_with(version="3")), 422, "version"),
        (_post_json(_without("alerts")), 422, "alerts"),
        (_post_json(_second_alert(fingerprint=None)), 422, "fingerprint"),
        (_post_json(_second_alert(fingerprint="")), 422, "fingerprint"),
        (_post_json(_second_alert(status="pending")), 422, "'firing' or 'resolved'"),
        (_post_json(_with(status="pending")), 422, "'firing' or 'resolved'"),
        (_post_json(_second_alert(startsAt="yesterday-ish")), 422, "startsAt"),
        (_post_json(_second_alert(labels=None)), 422, "labels"),
        (
            lambda c: c.post(
                URL,
                content=b'{"version": "4", "alerts": [',
                headers={"Content-Type": "application/json"},
            ),
            422,
            "JSON",
        ),
        (
            lambda c: c.post(
                URL,
                content=json.dumps(_with(padding="x" * 1_100_000)).encode(),
                headers={"Content-Type": "application/json"},
            ),
            413,
            "larger than",
        ),
        (_post_json(firing(), Authorization="Bearer wrong"), 401, "token"),
        (_post_json(firing(), Authorization=""), 401, "token"),
        (_post_json(firing(), Authorization="Basic dXNlcjpwYXNz"), 401, "token"),
    ],
    ids=[
        "version-3",
        "missing-alerts",
        "alert-without-fingerprint",
        "alert-with-empty-fingerprint",
        "alert-status-pending",
        "webhook-status-pending",
        "startsAt-not-a-date",
        "alert-without-labels",
        "malformed-json",
        "oversized-body",
        "wrong-token",
        "no-token",
        "basic-auth",
    ],
)
def test_bad_webhook_is_refused_and_changes_nothing(client, rt, send_bad, status, says):
    # An incident already there: a refused delivery must not touch it either.
    assert outcomes(send(client, firing())) == ["created"]
    before = counts(rt)
    response = send_bad(client)
    assert response.status_code == status, response.text
    assert says.lower() in json.dumps(response.json()).lower(), response.text
    assert counts(rt) == before
    [incident] = incident_rows(rt)
    assert incident.status == IncidentStatus.new


def test_bad_webhook_names_the_faulty_field(client, rt):
    response = send(client, _second_alert(startsAt="yesterday-ish"))
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "alerts", 1, "startsAt"]
    assert "datetime" in error["msg"]
    assert counts(rt) == (0, 0, 0)


def test_oversized_body_is_refused_by_its_declared_length(client, rt):
    limit = rt.settings.max_body_bytes
    body = json.dumps(_with(padding="x" * limit)).encode()
    assert len(body) > limit
    response = client.post(URL, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"detail": f"request body is larger than {limit} bytes"}
    assert counts(rt) == (0, 0, 0)


def test_alert_times_with_an_offset_or_nanoseconds_are_accepted(client, rt):
    # Prometheus hands Alertmanager nanosecond timestamps; Go may keep a non-UTC offset.
    now = datetime.now(UTC)
    nanos = now.strftime("%Y-%m-%dT%H:%M:%S.") + "123456789Z"
    offset = (now - timedelta(hours=1)).astimezone().isoformat()
    alerts = [
        an_alert("00000000000000b1", starts_at=nanos),
        an_alert("00000000000000b2", starts_at=offset),
    ]
    assert outcomes(send(client, alert_payload(alerts))) == ["created", "created"]
    assert outcomes(send(client, alert_payload(alerts))) == ["duplicate", "duplicate"]
    assert counts(rt) == (2, 2, 2)
