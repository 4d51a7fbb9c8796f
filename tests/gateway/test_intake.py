"""Opening incidents over HTTP: accepted ones are stored before the answer; bad ones change
nothing."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import text
from sqlmodel import Session, func, select

from itilflow.models import FlowTrigger, Incident, TimelineEntry
from tests.support.principals import as_person


def counts(rt) -> tuple[int, int, int]:
    with Session(rt.engine) as session:
        return tuple(
            session.exec(select(func.count()).select_from(table)).one()
            for table in (Incident, TimelineEntry, FlowTrigger)
        )


def test_health_needs_no_token(client):
    response = client.get("/health", headers={"Authorization": ""})
    assert response.status_code == 200


def test_open_incident_is_stored_with_its_start_trigger(client, rt):
    response = client.post(
        "/api/incidents",
        json={
            "title": "Payment module fails",
            "impact": "high",
            "urgency": "high",
            "category": "software",
            "reporter_email": "owner@example.com",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["number"] == f"INC-{body['id']:06d}"
    assert body["url"].endswith(f"/api/incidents/{body['id']}")
    with Session(rt.engine) as session:
        incident = session.get(Incident, body["id"])
        assert incident.title == "Payment module fails"
        trigger = session.exec(select(FlowTrigger)).one()
        assert (trigger.kind, trigger.incident_id) == ("open", incident.id)
    detail = client.get(f"/api/incidents/{body['number']}").json()
    assert detail["status"] == "new"
    timeline = client.get(f"/api/incidents/{body['id']}/timeline").json()
    assert [entry["kind"] for entry in timeline] == ["opened"]


def test_idempotency_key_returns_the_same_incident(client, rt):
    payload = {"title": "Disk full"}
    first = client.post("/api/incidents", json=payload, headers={"Idempotency-Key": "k-1"})
    again = client.post("/api/incidents", json=payload, headers={"Idempotency-Key": "k-1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert again.json()["created"] is False
    assert counts(rt) == (1, 1, 1)


@pytest.mark.parametrize(
    ("send", "status", "says"),
    [
        (
            lambda c: c.post(
                "/api/incidents", content=b"{not json", headers={"Content-Type": "application/json"}
            ),
            422,
            "JSON",
        ),
        (lambda c: c.post("/api/incidents", json={"title": "x", "priority": "P9"}), 422, "P9"),
        # Longer than the column: refused by the same rule, not a 500 (fuzzing).
        (
            lambda c: c.post("/api/incidents", json={"title": "x", "priority": "PriorityPolicy"}),
            422,
            "unknown priority",
        ),
        (lambda c: c.post("/api/incidents", json={"title": "x", "impact": "huge"}), 422, "huge"),
        (lambda c: c.post("/api/incidents", json={"title": ""}), 422, "title"),
        (lambda c: c.post("/api/incidents", json={"title": "x", "colour": "red"}), 422, "colour"),
        (lambda c: c.post("/api/incidents", json={"title": "a\x00b"}), 422, "control"),
        (
            lambda c: c.post("/api/incidents", json={"title": "x", "reporter_email": "nope"}),
            422,
            "email",
        ),
        (lambda c: c.post("/api/incidents", json={"title": "x" * 301}), 422, "300"),
        (
            lambda c: c.post(
                "/api/incidents",
                content=b"{" + b" " * 1_100_000 + b"}",
                headers={"Content-Type": "application/json"},
            ),
            413,
            "larger",
        ),
        (
            lambda c: c.post(
                "/api/incidents", json={"title": "x"}, headers={"Authorization": "Bearer wrong"}
            ),
            401,
            "token",
        ),
        (
            lambda c: c.post("/api/incidents", json={"title": "x"}, headers={"Authorization": ""}),
            401,
            "token",
        ),
    ],
    ids=[
        "malformed-json",
        "unknown-priority",
        "priority-longer-than-the-column",
        "unknown-impact",
        "blank-title",
        "unknown-field",
        "control-char",
        "bad-email",
        "long-title",
        "oversized-body",
        "wrong-token",
        "no-token",
    ],
)
def test_bad_input_is_refused_and_changes_nothing(client, rt, send, status, says):
    before = counts(rt)
    response = send(client)
    assert response.status_code == status, response.text
    assert says.lower() in json.dumps(response.json()).lower()
    assert counts(rt) == before


def test_every_route_but_health_and_surveys_needs_the_token(client):
    # Included routers' routes too (FastAPI 0.150 keeps each router as one entry of app.routes).
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # before FastAPI 0.150 the app's route list was already flat
        every_route = client.app.routes
    else:
        every_route = iter_route_contexts(client.app.routes)
    routes = [route for route in every_route if getattr(route, "path", "/").startswith("/api")]
    assert routes
    for route in routes:
        for method in route.methods:
            path = route.path.replace("{ref}", "1").replace("{action}", "comment")
            response = client.request(method, path, headers={"Authorization": ""}, json={})
            assert response.status_code == 401, (method, path)


def test_html_in_a_title_is_stored_as_text(client, rt):
    title = '<script>alert("x")</script> server down'
    response = client.post("/api/incidents", json={"title": title})
    assert response.status_code == 201
    assert client.get(f"/api/incidents/{response.json()['id']}").json()["title"] == title


def test_actions_follow_the_lifecycle(client, rt):
    number = client.post("/api/incidents", json={"title": "VPN down"}).json()["number"]
    assert client.post(f"/api/incidents/{number}/acknowledge", json={}).status_code == 200
    refused = client.post(f"/api/incidents/{number}/close", json={"note": "done"})
    assert refused.status_code == 409
    assert "resolved" in refused.json()["detail"]
    no_note = client.post(f"/api/incidents/{number}/resolve", json={})
    assert no_note.status_code == 409
    resolved = client.post(f"/api/incidents/{number}/resolve", json={"note": "router rebooted"})
    assert resolved.json()["status"] == "resolved"
    lin = as_person(rt, "lin", roles=("agent",))
    closed = client.post(f"/api/incidents/{number}/close", json={}, headers=lin)
    assert closed.json()["status"] == "closed"
    kinds = [e["kind"] for e in client.get(f"/api/incidents/{number}/timeline").json()]
    assert kinds == ["opened", "acknowledged", "resolved", "closed"]
    assert client.post("/api/incidents/INC-999999/comment", json={"note": "x"}).status_code == 404
    assert client.post(f"/api/incidents/{number}/explode", json={}).status_code == 422


def _post_together(client, bodies_and_headers: list[tuple[dict, dict]]) -> list:
    """Send the requests at once from threads, so that they share the writer's transactions."""
    responses: list = [None] * len(bodies_and_headers)
    barrier = threading.Barrier(len(bodies_and_headers))

    def post(index: int, body: dict, headers: dict) -> None:
        barrier.wait()
        responses[index] = client.post("/api/incidents", json=body, headers=headers)

    threads = [
        threading.Thread(target=post, args=(i, body, headers))
        for i, (body, headers) in enumerate(bodies_and_headers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return responses


def test_concurrent_requests_with_one_idempotency_key_open_one_incident(client, rt):
    responses = _post_together(client, [({"title": "Disk full"}, {"Idempotency-Key": "same"})] * 6)
    assert sorted(r.status_code for r in responses) == [200] * 5 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert [r.json()["created"] for r in responses].count(True) == 1
    assert counts(rt) == (1, 1, 1)


def test_concurrent_requests_without_a_key_each_open_an_incident(client, rt):
    responses = _post_together(client, [({"title": f"printer {n}"}, {}) for n in range(8)])
    assert [r.status_code for r in responses] == [201] * 8
    ids = [r.json()["id"] for r in responses]
    assert len(set(ids)) == 8
    with Session(rt.engine) as session:
        titles = {i.id: i.title for i in session.exec(select(Incident))}
    assert [titles[i] for i in ids] == [f"printer {n}" for n in range(8)]
    assert counts(rt) == (8, 8, 8)


def test_a_repeated_key_answers_with_the_incident_as_it_is_now(client, rt):
    first = client.post("/api/incidents", json={"title": "VPN"}, headers={"Idempotency-Key": "k"})
    number = first.json()["number"]
    assert client.post(f"/api/incidents/{number}/acknowledge", json={}).status_code == 200
    again = client.post("/api/incidents", json={"title": "VPN"}, headers={"Idempotency-Key": "k"})
    assert again.status_code == 200
    assert (again.json()["id"], again.json()["status"]) == (first.json()["id"], "acknowledged")


def test_a_failed_transaction_stores_nothing_and_answers_503(client, rt):
    with Session(rt.engine) as session:
        session.execute(
            text(
                "CREATE TRIGGER refuse_triggers BEFORE INSERT ON flowtrigger "
                "BEGIN INSERT INTO no_such_table VALUES (1); END"
            )
        )
        session.commit()
    response = client.post("/api/incidents", json={"title": "Mail queue stuck"})
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"]
    assert counts(rt) == (0, 0, 0)
