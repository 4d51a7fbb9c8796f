"""/api/groups, /api/people and /api/cis on the demo team: every write checked against the other
records, refusals that say what is wrong and change nothing, no DELETE, and a deactivated
engineer who is never assigned."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session

from itilflow.models import Engineer, Incident
from itilflow.tasks.incident.assign_incident import assign_incidents

NEW_ENGINEER = {
    "username": "ma",
    "name": "Ma Li",
    "email": "ma@example.com",
    "phone": "+86 10 5555 0100",
    "language": "zh_CN",
    "time_zone": "Asia/Shanghai",
    "groups": ["network", "dba"],
    "skills": ["database", "network"],
    "capacity": 3,
}


def test_an_engineer_is_created_listed_read_and_updated(client: Any) -> None:
    created = client.post("/api/people", json=NEW_ENGINEER)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["group_name"] == "network" and body["groups"] == ["network", "dba"]
    assert body["active"] is True and body["time_zone"] == "Asia/Shanghai"

    # A member of a second group is listed with both.
    dba = [e["username"] for e in client.get("/api/people", params={"group": "dba"}).json()]
    assert dba == ["ma", "sun"]
    found = client.get("/api/people", params={"q": "MA LI"}).json()
    assert [e["username"] for e in found] == ["ma"]
    assert client.get("/api/people/ma").json() == body

    patched = client.patch("/api/people/ma", json={"capacity": 4, "phone": None})
    assert patched.status_code == 200, patched.text
    assert patched.json() == body | {"capacity": 4, "phone": None}


def test_groups_and_cis_are_created_and_updated(client: Any) -> None:
    group = client.post(
        "/api/groups",
        json={
            "name": "storage",
            "lead": "sun",
            "manager": "zhou",
            "escalation_contacts": ["zhou", "sun"],
            "email": "storage@example.com",
        },
    )
    assert group.status_code == 201, group.text
    ci = client.post(
        "/api/cis",
        json={
            "name": "san-01",
            "kind": "storage",
            "criticality": "critical",
            "owner_group": "storage",
            "environment": "production",
            "depends_on": ["core-switch-01"],
            "attributes": {"rack": "B2"},
        },
    )
    assert ci.status_code == 201, ci.text
    assert ci.json()["depends_on"] == ["core-switch-01"]
    owned = client.get("/api/cis", params={"group": "storage"}).json()
    assert [c["name"] for c in owned] == ["san-01"]
    updated = client.patch("/api/groups/storage", json={"escalation_contacts": ["zhou"]})
    assert updated.json()["escalation_contacts"] == ["zhou"]
    assert updated.json()["lead"] == "sun"  # not sent, not changed


@pytest.mark.parametrize(
    ("change", "column", "message"),
    [
        ({"groups": ["nope"]}, "groups", "unknown group 'nope'"),
        # Deactivated or not, the membership refers to the group: it was a 500 (fuzzing).
        ({"groups": ["nope"], "active": False}, "groups", "unknown group 'nope'"),
        ({"language": "fr"}, "language", "'en' or 'zh_CN'"),
        ({"time_zone": "Mars/Olympus"}, "time_zone", "IANA time zone"),
        # Longer than a file name may be: ZoneInfo raises OSError, which was a 500 (fuzzing).
        ({"time_zone": "Asia/" + "x" * 300}, "time_zone", "IANA time zone"),
        ({"email": "ma.example.com"}, "email", "email address"),
        ({"capacity": -1}, "capacity", "greater than or equal to 0"),
        ({"groups": []}, "groups", "at least 1 item"),
        ({"username": "ma li"}, "username", "no spaces"),
    ],
)
def test_a_bad_engineer_is_refused_and_nothing_is_stored(
    client: Any, rt: Any, change: dict[str, Any], column: str, message: str
) -> None:
    response = client.post("/api/people", json=NEW_ENGINEER | change)
    assert response.status_code == 422, response.text
    [problem] = [p for p in response.json()["detail"] if p["loc"][-1] == column]
    assert message in problem["msg"]
    with Session(rt.engine) as session:
        assert session.get(Engineer, "ma") is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "loop", "depends_on": ["loop"]}, "'loop' cannot depend on itself"),
        ({"name": "orphan", "depends_on": ["no-such-ci"]}, "unknown CI 'no-such-ci'"),
        ({"name": "stray", "owner_group": "nope"}, "unknown group 'nope'"),
        ({"name": "odd", "criticality": "extreme"}, "'low', 'medium', 'high' or 'critical'"),
    ],
)
def test_a_bad_ci_is_refused(client: Any, body: dict[str, Any], message: str) -> None:
    response = client.post("/api/cis", json=body)
    assert response.status_code == 422, response.text
    assert any(message in p["msg"] for p in response.json()["detail"]), response.text
    assert client.get(f"/api/cis/{body['name']}").status_code == 404


def test_an_update_is_checked_like_a_create(client: Any) -> None:
    response = client.patch("/api/people/sun", json={"groups": ["dba", "nope"]})
    assert response.status_code == 422
    assert "unknown group 'nope'" in response.json()["detail"][0]["msg"]
    assert client.get("/api/people/sun").json()["groups"] == ["dba"]
    response = client.patch("/api/cis/erp-db-01", json={"depends_on": ["erp-db-01"]})
    assert response.status_code == 422


def test_duplicates_and_unknown_records(client: Any) -> None:
    again = client.post("/api/people", json=NEW_ENGINEER | {"username": "sun"})
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    assert client.get("/api/people/nobody").status_code == 404
    assert client.patch("/api/groups/nobody", json={"email": None}).status_code == 404
    assert client.post("/api/cis/nothing/deactivate").status_code == 404


def test_nothing_is_ever_deleted(client: Any) -> None:
    for path in ("/api/people/sun", "/api/groups/dba", "/api/cis/erp-db-01"):
        assert client.delete(path).status_code == 405
        assert client.get(path).status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    directory = {
        p: ops
        for p, ops in paths.items()
        if p.startswith(("/api/people", "/api/groups", "/api/cis"))
    }
    assert directory and not any("delete" in ops for ops in directory.values())


def test_the_routes_need_the_bearer_token(client: Any) -> None:
    for method, path in [("get", "/api/people"), ("post", "/api/groups"), ("patch", "/api/cis/x")]:
        response = getattr(client, method)(path, headers={"Authorization": "Bearer wrong"})
        assert response.status_code == 401


def test_deactivation_keeps_the_record_and_is_refused_while_others_need_it(client: Any) -> None:
    refused = client.post("/api/groups/dba/deactivate")
    assert refused.status_code == 422
    messages = " ".join(p["msg"] for p in refused.json()["detail"])
    assert "active members (sun)" in messages and "active CIs (erp-db-01)" in messages
    assert client.get("/api/groups/dba").json()["active"] is True

    depended = client.post("/api/cis", json={"name": "erp-app", "depends_on": ["erp-db-01"]})
    assert depended.status_code == 201
    assert client.post("/api/cis/erp-db-01/deactivate").status_code == 422
    assert client.post("/api/cis/erp-app/deactivate").json()["active"] is False
    assert client.post("/api/cis/erp-db-01/deactivate").json()["active"] is False
    assert client.post("/api/people/sun/deactivate").json()["active"] is False
    assert client.post("/api/groups/dba/deactivate").json()["active"] is False
    # A deactivated group takes no new members; listing can show either side.
    joined = client.patch("/api/people/liu", json={"groups": ["applications", "dba"]})
    assert joined.status_code == 422 and "deactivated" in joined.json()["detail"][0]["msg"]
    assert [g["name"] for g in client.get("/api/groups", params={"active": False}).json()] == [
        "dba"
    ]
    assert client.post("/api/groups/dba/reactivate").json()["active"] is True
    assert client.post("/api/people/sun/reactivate").json()["active"] is True


def _database_incident(client: Any, rt: Any) -> int:
    response = client.post(
        "/api/incidents",
        json={"title": "Replication lag on erp-db-01", "category": "database", "ci": "erp-db-01"},
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_a_deactivated_engineer_is_never_assigned(client: Any, rt: Any) -> None:
    first = _database_incident(client, rt)
    assert assign_incidents.fn([first]) == {first: "sun"}

    assert client.post("/api/people/sun/deactivate").status_code == 200
    second = _database_incident(client, rt)
    assert assign_incidents.fn([second]) == {second: None}  # dba has nobody else

    # A second group's member takes the group's work.
    assert client.post("/api/people", json=NEW_ENGINEER).status_code == 201
    third = _database_incident(client, rt)
    assert assign_incidents.fn([third]) == {third: "ma"}
    with Session(rt.engine) as session:
        incident = session.get(Incident, third)
        assert incident is not None and incident.group_name == "dba"
        # The first incident stays with its engineer: deactivation reassigns nothing.
        kept = session.get(Incident, first)
        assert kept is not None and kept.assignee == "sun"


def test_a_deactivated_engineer_hears_no_group_mail(client: Any, rt: Any) -> None:
    """Group notifications go to list_engineers(group=...): active members only, secondary
    memberships included."""
    from itilflow.models import list_engineers

    assert client.post("/api/people", json=NEW_ENGINEER).status_code == 201
    with Session(rt.engine) as session:
        assert [e.username for e in list_engineers(session=session, group="dba")] == ["ma", "sun"]
    assert client.post("/api/people/sun/deactivate").status_code == 200
    with Session(rt.engine) as session:
        assert [e.username for e in list_engineers(session=session, group="dba")] == ["ma"]
        everyone = list_engineers(session=session, group="dba", active=None)
        assert [e.username for e in everyone] == ["ma", "sun"]
