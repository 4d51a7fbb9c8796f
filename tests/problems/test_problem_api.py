"""The problem and knowledge routes of the gateway, with the bearer token like every route."""

from __future__ import annotations

from itilflow import clock
from itilflow.models import ChangeStatus
from tests.problems.history import NOW, WHYS, add_change, load_history, problem_for, review
from tests.support.principals import as_person


def test_list_read_and_work_a_problem_through_the_api(client, rt) -> None:
    groups = load_history(rt.engine)
    clock.freeze(NOW)
    review(rt.engine, rt.policies)
    pid = problem_for(rt.engine, "ci", "shop-payment").id

    listed = client.get("/api/problems").json()
    assert {p["match_value"] for p in listed} == {"shop-payment", "network", "fp-disk-erp"}
    assert client.get("/api/problems", params={"status": "closed"}).json() == []

    detail = client.get(f"/api/problems/PRB-{pid:06d}").json()
    assert detail["number"] == f"PRB-{pid:06d}"
    assert detail["owner"] == "chen" and detail["incident_count"] == 3
    assert [i["id"] for i in detail["incidents"]] == groups["payment"]
    assert [e["kind"] for e in detail["timeline"]] == ["opened", "assigned", "incidents_linked"]
    assert detail["article"] is None

    response = client.post(f"/api/problems/{pid}/known_error", json={"workaround": "restart"})
    assert response.status_code == 409
    assert "no root cause yet" in response.json()["detail"]

    analysed = client.post(
        f"/api/problems/{pid}/analyse",
        json={"whys": WHYS, "root_cause_category": "capacity"},
        headers=as_person(rt, "chen", roles=("agent",)),
    ).json()
    assert analysed["status"] == "investigating" and analysed["whys"] == WHYS
    known = client.post(
        f"/api/problems/{pid}/known_error",
        json={"workaround": "Restart the payment service", "keywords": ["payment"]},
    ).json()
    assert known["status"] == "known_error"
    assert known["article"]["workaround"] == "Restart the payment service"
    assert analysed["timeline"][-1]["actor"] == "chen"
    assert known["timeline"][-1]["actor"] == "admin"  # the bootstrap token's holder

    change_id = add_change(rt.engine, ChangeStatus.successful)
    fixing = client.post(f"/api/problems/{pid}/link_fix", json={"change": f"CHG-{change_id:06d}"})
    assert fixing.json()["fix_change"] == f"CHG-{change_id:06d}"
    assert client.post(f"/api/problems/{pid}/resolve", json={}).json()["status"] == "resolved"

    timeline = client.get(f"/api/problems/{pid}/timeline").json()
    assert [e["kind"] for e in timeline][-4:] == [
        "root_cause",
        "known_error",
        "fix_linked",
        "resolved",
    ]

    [hit] = client.get("/api/knowledge", params={"q": "PAYMENT service"}).json()
    assert hit["problem"] == f"PRB-{pid:06d}" and hit["score"] > 0
    assert client.get(f"/api/knowledge/{hit['number']}").json()["id"] == hit["id"]


def test_refusals_and_unknowns(client, rt) -> None:
    load_history(rt.engine)
    clock.freeze(NOW)
    review(rt.engine, rt.policies)
    pid = problem_for(rt.engine, "ci", "shop-payment").id

    assert client.get("/api/problems/PRB-000999").status_code == 404
    assert client.get("/api/problems/nonsense").status_code == 404
    assert client.get("/api/knowledge/KB-000999").status_code == 404
    assert client.post(f"/api/problems/{pid}/frobnicate", json={}).status_code == 422
    assert client.post(f"/api/problems/{pid}/comment", json={"bogus": 1}).status_code == 422
    response = client.post(f"/api/problems/{pid}/close", json={})
    assert response.status_code == 409 and "needs one of resolved" in response.json()["detail"]

    anonymous = {"Authorization": ""}
    assert client.get("/api/problems", headers=anonymous).status_code == 401
    assert client.get("/api/knowledge", params={"q": "x"}, headers=anonymous).status_code == 401
    assert (
        client.post(
            f"/api/problems/{pid}/comment", json={"note": "x"}, headers=anonymous
        ).status_code
        == 401
    )
