"""Alertmanager resend storms: the same alerts delivered a hundred times, by one sender and by
many at once, straight to the gateway and through Debian's real prometheus-alertmanager, open
exactly one incident each with one `open` trigger, and nothing answers 5xx."""

from __future__ import annotations

import copy
import json
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session, func, select

from itilflow.gateway.app import create_app
from itilflow.models import FlowTrigger, Incident, TimelineEntry
from tests.support.alertmanager import Alertmanager, make_alert

from .gateway_support import StatusRecorder, bearer, served

PAYLOADS = Path(__file__).resolve().parents[1] / "support" / "alertmanager_payloads"
WEBHOOK = "/api/alertmanager"
ALERTS = 10
DELIVERIES = 100
SENDERS = 10


def firing_alerts() -> list[dict[str, Any]]:
    """ALERTS different alerts in the webhook's shape (from a payload a real Alertmanager sent)."""
    template = json.loads((PAYLOADS / "firing.json").read_text())["alerts"][0]
    alerts = []
    for n in range(ALERTS):
        alert = copy.deepcopy(template)
        alert["fingerprint"] = f"{n:016x}"
        alert["labels"]["instance"] = f"web-{n:02d}:9100"
        alert["annotations"]["summary"] = f"web-{n:02d}:9100 is down"
        alerts.append(alert)
    return alerts


def delivery(number: int, alerts: list[dict[str, Any]], status: str) -> dict[str, Any]:
    """One webhook as one of two replicas sends it: its own receiver, group key and external
    URL, the alerts in its own order, and every fifth delivery only half of them."""
    shuffled = [dict(alert, status=status) for alert in alerts]
    if status == "resolved":
        for alert in shuffled:
            alert["endsAt"] = "2026-11-23T18:00:00Z"
    random.Random(number).shuffle(shuffled)
    if number % 5 == 4:
        shuffled = shuffled[: ALERTS // 2]
    replica = number % 2
    payload = json.loads((PAYLOADS / "firing.json").read_text())
    payload.update(
        status=status,
        alerts=shuffled,
        receiver=f"itilflow-replica-{replica}",
        groupKey=f'{{}}/{{replica="{replica}"}}:{{job="node"}}',
        externalURL=f"http://alertmanager-{replica}.example:9093",
    )
    return payload


def deliver_at_once(url: str, headers: dict[str, str], payloads: list[dict[str, Any]]) -> list:
    """SENDERS threads post `payloads` between them, starting together; returns the responses
    (status code and outcomes)."""
    results: list[tuple[int, list[str]]] = []
    lock = threading.Lock()
    start = threading.Barrier(SENDERS)

    def sender(mine: list[dict[str, Any]]) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30, trust_env=False) as client:
            start.wait()
            for payload in mine:
                response = client.post(WEBHOOK, json=payload)
                outcomes = (
                    [a["outcome"] for a in response.json()["alerts"]]
                    if response.status_code == 200
                    else []
                )
                with lock:
                    results.append((response.status_code, outcomes))

    threads = [
        threading.Thread(target=sender, args=(payloads[i::SENDERS],)) for i in range(SENDERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def open_triggers_per_incident(rt: Any, kind: str = "open") -> dict[int, int]:
    with Session(rt.engine) as session:
        rows = session.exec(
            select(FlowTrigger.incident_id, func.count())
            .where(FlowTrigger.kind == kind)
            .group_by(FlowTrigger.incident_id)
        ).all()
        return dict(rows)


def incidents_and_timeline(rt: Any) -> tuple[list[Incident], Counter[str]]:
    with Session(rt.engine) as session:
        incidents = list(session.exec(select(Incident)))
        kinds = Counter(entry.kind for entry in session.exec(select(TimelineEntry)))
        return incidents, kinds


def test_a_hundred_concurrent_resends_open_one_incident_per_alert(
    rt: Any, fault_figures: Any
) -> None:
    alerts = firing_alerts()
    recorder = StatusRecorder(create_app(rt.settings, rt.policies))
    started = time.monotonic()
    with served(recorder) as url:
        fired = deliver_at_once(
            url, bearer(rt), [delivery(n, alerts, "firing") for n in range(DELIVERIES)]
        )
        resolved = deliver_at_once(
            url, bearer(rt), [delivery(n, alerts, "resolved") for n in range(DELIVERIES)]
        )
    seconds = time.monotonic() - started
    statuses = recorder.of(WEBHOOK)
    incidents, kinds = incidents_and_timeline(rt)
    fault_figures(
        "alertmanager storm, direct",
        alerts=ALERTS,
        deliveries=f"{len(fired)} firing + {len(resolved)} resolved",
        senders=SENDERS,
        incidents=len(incidents),
        non_2xx=sum(1 for s in statuses if not 200 <= s < 300),
        seconds=round(seconds, 1),
    )
    assert len(statuses) == 2 * DELIVERIES and set(statuses) == {200}, Counter(statuses)
    fired_outcomes = Counter(o for _, outcomes in fired for o in outcomes)
    assert fired_outcomes["created"] == ALERTS, fired_outcomes
    assert set(fired_outcomes) == {"created", "duplicate"}
    resolved_outcomes = Counter(o for _, outcomes in resolved for o in outcomes)
    assert resolved_outcomes["resolved"] == ALERTS, resolved_outcomes
    assert set(resolved_outcomes) == {"resolved", "duplicate"}

    assert len(incidents) == ALERTS
    assert {i.fingerprint for i in incidents} == {a["fingerprint"] for a in alerts}
    assert {i.status.value for i in incidents} == {"resolved"}
    assert open_triggers_per_incident(rt) == {i.id: 1 for i in incidents}
    assert open_triggers_per_incident(rt, "resolved") == {i.id: 1 for i in incidents}
    assert kinds == {"opened": ALERTS, "resolved": ALERTS}


def test_real_alertmanager_replicas_resending_open_one_incident_per_alert(
    rt: Any, alertmanager_factory: Any, fault_figures: Any
) -> None:
    """Two Alertmanagers that do not gossip (each delivers everything, as a split HA pair
    does), re-sending every group each second while Prometheus keeps re-posting the alerts."""
    alerts = [
        make_alert(
            "HostDown",
            instance=f"web-{n:02d}:9100",
            labels={"severity": "critical", "job": "node"},
            annotations={"summary": f"web-{n:02d}:9100 is down"},
        )
        for n in range(ALERTS)
    ]
    recorder = StatusRecorder(create_app(rt.settings, rt.policies))
    token = rt.settings.api_token.get_secret_value()
    started = time.monotonic()
    with served(recorder) as url:
        replicas: list[Alertmanager] = [
            alertmanager_factory(
                f"{url}{WEBHOOK}",
                token=token,
                group_wait="200ms",
                group_interval="1s",
                repeat_interval="1s",
            )
            for _ in range(2)
        ]
        starts_at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        deadline = time.monotonic() + 40
        while len(recorder.of(WEBHOOK)) < DELIVERIES:
            assert time.monotonic() < deadline, f"only {len(recorder.of(WEBHOOK))} deliveries"
            for replica in replicas:  # Prometheus re-sends firing alerts every evaluation
                replica.post_alerts([dict(alert, startsAt=starts_at) for alert in alerts])
            time.sleep(0.5)
        for replica in replicas:
            replica.stop()
    seconds = time.monotonic() - started
    statuses = recorder.of(WEBHOOK)
    incidents, kinds = incidents_and_timeline(rt)
    fault_figures(
        "alertmanager storm, 2 real replicas",
        alerts=ALERTS,
        deliveries=len(statuses),
        incidents=len(incidents),
        non_2xx=sum(1 for s in statuses if not 200 <= s < 300),
        seconds=round(seconds, 1),
    )
    assert set(statuses) == {200}, Counter(statuses)
    assert len(incidents) == ALERTS
    assert {i.title for i in incidents} == {a["annotations"]["summary"] for a in alerts}
    assert open_triggers_per_incident(rt) == {i.id: 1 for i in incidents}
    assert kinds == {"opened": ALERTS}
