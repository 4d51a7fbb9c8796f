"""The webhook's bulk path: alerts of concurrent webhooks share transactions, duplicates land on
one incident wherever they come from, and a failed transaction stores nothing and answers 503
so that Alertmanager sends the webhook again."""

from __future__ import annotations

import random
import threading
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, select

from itilflow.models import FlowTrigger, IncidentStatus
from itilflow.services import alerts as alertmanager
from tests.gateway.test_alertmanager_webhook import (
    alert_payload,
    an_alert,
    counts,
    firing,
    incident_rows,
    outcomes,
    send,
    timeline,
)


def results(response: Any) -> list[tuple[str, int | None]]:
    assert response.status_code == 200, response.text
    return [(alert["outcome"], alert["id"]) for alert in response.json()["alerts"]]


def test_duplicates_inside_one_webhook_land_on_their_incidents(client, rt):
    a, b, c = (an_alert(f"{n:016x}", instance=f"web-{n}:9100") for n in (1, 2, 3))
    got = results(send(client, alert_payload([a, b, a, c, b, a])))
    assert [outcome for outcome, _ in got] == [
        "created",
        "created",
        "duplicate",
        "created",
        "duplicate",
        "duplicate",
    ]
    ids = [incident_id for _, incident_id in got]
    assert ids[0] == ids[2] == ids[5] and ids[1] == ids[4]
    assert len({ids[0], ids[1], ids[3]}) == 3
    assert counts(rt) == (3, 3, 3)
    by_id = {incident.id: incident for incident in incident_rows(rt)}
    assert by_id[ids[1]].ci_name == "web-2:9100"


def test_an_alert_that_fires_and_resolves_in_one_webhook_is_opened_then_resolved(client, rt):
    fired = an_alert("00000000000000c1")
    ended = an_alert("00000000000000c1", status="resolved")
    got = results(send(client, alert_payload([fired, ended, fired])))
    assert [outcome for outcome, _ in got] == ["created", "resolved", "duplicate"]
    assert len({incident_id for _, incident_id in got}) == 1
    [incident] = incident_rows(rt)
    assert incident.status == IncidentStatus.resolved
    assert [entry.kind for entry in timeline(rt, incident.id)] == ["opened", "resolved"]


def test_concurrent_webhooks_with_overlapping_alerts_open_each_incident_once(client, rt):
    alerts = [an_alert(f"{n:016x}", instance=f"web-{n}:9100") for n in range(20)]
    seen: list[list[tuple[str, int | None]]] = []
    barrier = threading.Barrier(8)

    def deliver(seed: int) -> None:
        mine = random.Random(seed).sample(alerts, 12)
        barrier.wait()
        response = send(client, alert_payload(mine))
        seen.append([(a["fingerprint"], r) for a, r in zip(mine, results(response), strict=True)])

    threads = [threading.Thread(target=deliver, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(seen) == 8
    ids_of: dict[str, set[int | None]] = {}
    created: dict[str, int] = {}
    for webhook in seen:
        for fingerprint, (outcome, incident_id) in webhook:
            ids_of.setdefault(fingerprint, set()).add(incident_id)
            created[fingerprint] = created.get(fingerprint, 0) + (outcome == "created")
    assert all(len(ids) == 1 and None not in ids for ids in ids_of.values())
    assert set(created.values()) == {1}  # each delivered alert was created exactly once
    stored = len(ids_of)
    assert counts(rt) == (stored, stored, stored)


def test_a_key_stored_meanwhile_by_another_transaction_is_read_again(client, rt, monkeypatch):
    # On PostgreSQL another gateway process may commit the same alert between our lookup and
    # our insert; the unique dedup key refuses ours and the group is run again.
    first = results(send(client, firing()))
    real_lookup = alertmanager.incident_ids_by_dedup_key
    lookups: list[int] = []

    def stale_then_real(**kwargs: Any) -> dict[str, int]:
        lookups.append(1)
        return {} if len(lookups) == 1 else real_lookup(**kwargs)

    monkeypatch.setattr(alertmanager, "incident_ids_by_dedup_key", stale_then_real)
    assert results(send(client, firing())) == [("duplicate", first[0][1])]
    assert len(lookups) == 2
    assert counts(rt) == (1, 1, 1)


def test_a_failed_transaction_stores_nothing_and_answers_503(client, rt):
    assert outcomes(send(client, firing())) == ["created"]
    before = counts(rt)
    # The database refuses the third statement of the transaction (the open triggers): the
    # incidents and timeline rows written before it must go too.
    with Session(rt.engine) as session:
        session.execute(
            text(
                "CREATE TRIGGER refuse_triggers BEFORE INSERT ON flowtrigger "
                "BEGIN INSERT INTO no_such_table VALUES (1); END"
            )
        )
        session.commit()
    alerts = [an_alert(f"{n:016x}") for n in range(5)]
    response = send(client, alert_payload(alerts))
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"]
    assert "nothing was" in response.json()["detail"]
    assert counts(rt) == before

    with Session(rt.engine) as session:
        session.execute(text("DROP TRIGGER refuse_triggers"))
        session.commit()
    # Alertmanager's resend then goes through.
    assert outcomes(send(client, alert_payload(alerts))) == ["created"] * 5
    assert counts(rt) == (before[0] + 5, before[1] + 5, before[2] + 5)
    with Session(rt.engine) as session:
        open_triggers = session.exec(select(FlowTrigger).where(FlowTrigger.kind == "open")).all()
        assert {(t.key, t.done_at) for t in open_triggers} == {("open", None)}
        assert len(open_triggers) == 6


def test_a_nul_character_in_an_alert_is_dropped_not_the_alert(client, rt):
    # PostgreSQL refuses NUL in text; a refused webhook would be resent for ever.
    alert = an_alert("00000000000000d1", instance="db\x00-1:9100")
    alert["annotations"]["summary"] = "disk\x00 full"
    got = results(send(client, alert_payload([alert])))
    assert [outcome for outcome, _ in got] == ["created"]
    [incident] = incident_rows(rt)
    assert incident.title == "disk full" and incident.ci_name == "db-1:9100"
