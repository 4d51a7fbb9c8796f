"""Issue 12's attacks against a running stack (`itilflow up`, demo or production mode): each is
refused and changes nothing. The same attacks in depth, one module per area, are in
tests/security/."""

from __future__ import annotations

import uuid

import httpx

# The incident the attacks open (to claim an actor on it): a stack test leaves it out of its counts.
ATTACK_PROBE_TITLE = "attack probe"
STANDARD_CHANGE_RUNNING_ENV = {
    "title": "show env",
    "category": "standard",
    "plan": {"steps": [{"name": "env", "do": {"kind": "shell", "command": "env"}}]},
}


def assert_stack_refuses_attacks(
    gateway: str, prefect_api: str, auth: httpx.BasicAuth, admin_token: str
) -> None:
    """The Prefect API without its credentials, the gateway without a token, a free plan as a
    standard change, and names claimed in a body: all refused, no run and no change made."""
    with httpx.Client(base_url=prefect_api, auth=auth, timeout=30, trust_env=False) as prefect:
        [request_change] = prefect.post(
            "/deployments/filter", json={"deployments": {"name": {"any_": ["request-change"]}}}
        ).json()
    with httpx.Client(base_url=prefect_api, timeout=30, trust_env=False) as anonymous:
        assert anonymous.get("/health").status_code == 200  # health checks stay open
        started = anonymous.post(
            f"/deployments/{request_change['id']}/create_flow_run",
            json={"parameters": {"title": "t", "category": "standard"}},
        )
        assert started.status_code == 401, started.text
        resumed = anonymous.post(
            f"/flow_runs/{uuid.uuid4()}/resume",
            json={"run_input": {"approver": "chen", "decision": "approve"}},
        )
        assert resumed.status_code == 401, resumed.text
        assert anonymous.post("/deployments/filter", json={}).status_code == 401
    wrong = httpx.BasicAuth("itilflow", "not-the-password")
    with httpx.Client(base_url=prefect_api, auth=wrong, timeout=30, trust_env=False) as guessed:
        assert guessed.post("/deployments/filter", json={}).status_code == 401

    with httpx.Client(base_url=gateway, timeout=30, trust_env=False) as api:
        assert api.post("/api/changes", json=STANDARD_CHANGE_RUNNING_ENV).status_code == 401
        for header in ("", "Bearer", "Bearer not-a-token"):
            answer = api.get("/api/incidents", headers={"Authorization": header})
            assert answer.status_code == 401, (header, answer.text)
        admin = {"Authorization": f"Bearer {admin_token}"}
        free_plan = api.post("/api/changes", json=STANDARD_CHANGE_RUNNING_ENV, headers=admin)
        assert free_plan.status_code == 422, free_plan.text
        claimed = api.post(
            "/api/changes",
            json={**STANDARD_CHANGE_RUNNING_ENV, "category": "normal", "requester": "zhou"},
            headers=admin,
        )
        assert claimed.status_code == 422 and "requester" in claimed.text, claimed.text
        opened = api.post(
            "/api/incidents",
            json={"title": ATTACK_PROBE_TITLE, "impact": "low", "urgency": "low"},
            headers=admin,
        )
        assert opened.status_code == 201, opened.text
        as_zhou = api.post(
            f"/api/incidents/{opened.json()['id']}/resolve",
            json={"note": "done", "actor": "zhou"},
            headers=admin,
        )
        assert as_zhou.status_code == 422 and "actor" in as_zhou.text, as_zhou.text
        timeline = api.get(f"/api/incidents/{opened.json()['id']}/timeline", headers=admin)
        assert "zhou" not in {entry["actor"] for entry in timeline.json()}

    with httpx.Client(base_url=prefect_api, auth=auth, timeout=30, trust_env=False) as prefect:
        runs = prefect.post(
            "/flow_runs/filter",
            json={"deployments": {"id": {"any_": [request_change["id"]]}}},
        ).json()
        assert runs == [], runs  # request-change never ran
