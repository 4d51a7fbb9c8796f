"""Issue 12, principals: every request is made by a real principal, checked for its role, and
written down under its own name. Each attack is refused, logged, and changes nothing.

The walk goes over the app's own route table (tests/faults/test_gateway_auth.py's `routes`), so a
route added later is checked too; ROLE_OF below is docs/security.md's role matrix.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from itilflow.gateway.app import create_app
from itilflow.models import (
    ApiToken,
    ApprovalRequest,
    Change,
    ChangeEntry,
    ConfigurationItem,
    Engineer,
    FlowTrigger,
    Group,
    Incident,
    Problem,
    ProblemEntry,
    RoleGrant,
    TimelineEntry,
    session_scope,
)
from itilflow.services import directory, principals
from tests.faults.gateway_support import PLAN, RecordingChangeEngine, seed_objects
from tests.faults.test_gateway_auth import PUBLIC, SIGNED_LINK_PAGES, concrete, routes
from tests.support.principals import bearer_of, token_for

PAYLOADS = Path(__file__).resolve().parents[1] / "support" / "alertmanager_payloads"

# The role each route needs (admin holds them all); every other /api route needs reporter.
ROLE_OF = {
    ("POST", "/api/incidents/{ref}/{action}"): "agent",
    ("POST", "/api/problems/{ref}/{action}"): "agent",
    # Proactive notices show customer contacts; deciding also checks the CI's owner group.
    **{
        (method, f"/api/proactive{tail}"): "agent"
        for method, tail in (
            ("GET", ""),
            ("GET", "/{ref}"),
            ("GET", "/{ref}/timeline"),
            ("POST", "/{ref}/accept"),
            ("POST", "/{ref}/decline"),
        )
    },
    ("POST", "/api/incidents/{ref}/callbacks/{level}"): "agent",
    **{
        (method, f"/api/{kind}{tail}"): "admin"
        for kind in ("groups", "people", "cis")
        for method, tail in (
            ("POST", ""),
            ("PATCH", "/{key}"),
            ("POST", "/{key}/deactivate"),
            ("POST", "/{key}/reactivate"),
        )
    },
}
# Who lacks each role although holding every other it could: reporter is implied by every
# role, so only a principal without roles lacks it.
LACKING = {
    "reporter": ("zhou",),
    "agent": ("zhou", "li"),  # li: reporter and approver
    "admin": ("zhou", "wang"),  # wang: every role but admin
}
GRANTS = {
    "li": ("reporter", "approver"),
    "wang": ("group_lead", "change_manager", "approver", "agent", "reporter"),
}
SNAPSHOT_TABLES = (
    Incident, TimelineEntry, FlowTrigger, Change, ChangeEntry, ApprovalRequest, Problem,
    ProblemEntry, Engineer, Group, ConfigurationItem, RoleGrant,
)  # fmt: skip


def snapshot(rt: Any) -> dict[str, list[dict[str, Any]]]:
    """Every row of what a request could change (tokens aside: their last use is noted)."""
    with Session(rt.engine) as session:
        return {
            table.__name__: [row.model_dump() for row in session.exec(select(table))]
            for table in SNAPSHOT_TABLES
        }


def needed_role(method: str, path: str) -> str:
    return ROLE_OF.get((method, path), "reporter")


def route_role(app: Any, method: str, path: str) -> tuple[str, ...]:
    """The roles the route's dependency asks for (gateway/deps.py `require`)."""
    for route in app.router.routes:
        if getattr(route, "path", None) == path and method in getattr(route, "methods", ()):
            for dependency in route.dependant.dependencies:
                roles = getattr(dependency.call, "roles", None)
                if roles:
                    return tuple(roles)
    return ()


@pytest.fixture
def gateway(rt: Any) -> Iterator[tuple[Any, TestClient, dict[str, dict[str, str]]]]:
    app = create_app(rt.settings, rt.policies, change_engine=RecordingChangeEngine())
    with TestClient(app) as client:
        # Not entered: its exit would run the app's shutdown (closing the writers) mid-test.
        seeds = seed_objects(TestClient(app, headers=_bootstrap(rt)), rt)
        yield app, client, seeds


def _bootstrap(rt: Any) -> dict[str, str]:
    return bearer_of(rt.settings.api_token.get_secret_value())


def _api_routes(app: Any) -> list[tuple[str, str]]:
    table = sorted(set(routes(app)))
    return [
        (method, path)
        for method, path in table
        if path.startswith("/api") and path not in PUBLIC | SIGNED_LINK_PAGES
    ]


def test_every_api_route_checks_the_role_of_the_matrix(gateway: Any) -> None:
    app, _, _ = gateway
    walked = _api_routes(app)
    assert len(walked) >= 30
    wrong = {
        (method, path): route_role(app, method, path)
        for method, path in walked
        if route_role(app, method, path) != (needed_role(method, path),)
    }
    assert not wrong, wrong
    assert set(ROLE_OF) <= set(walked), set(ROLE_OF) - set(walked)


def test_every_route_refuses_bad_tokens_and_missing_roles_and_changes_nothing(
    gateway: Any, rt: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app, client, seeds = gateway
    bad_tokens = {
        "none": None,
        "unknown": principals.new_token(),
        "revoked": token_for(rt.engine, "liu", ("admin",)),
        "expired": _expired_token(rt),
        "deactivated person's": token_for(rt.engine, "sun", ("admin",), kind="person"),
    }
    with session_scope(rt.engine) as session:
        directory.set_active(session, "people", "sun", False)
        revoked = session.exec(select(ApiToken).where(ApiToken.principal == "liu")).one()
        principals.revoke_token(session=session, token_id=revoked.id, revoked_by="test")
    holders = {"zhou": token_for(rt.engine, "zhou")}
    holders |= {name: token_for(rt.engine, name, roles) for name, roles in GRANTS.items()}
    before = snapshot(rt)
    caplog.set_level(logging.WARNING, logger="itilflow.gateway.auth")
    let_through: list[str] = []
    forbidden = 0
    for method, path in _api_routes(app):
        url = concrete(path, seeds)
        body = {"title": "t", "note": "n", "alerts": [], "plan": PLAN}
        body = body if method in {"POST", "PATCH"} else None
        for name, token in bad_tokens.items():
            headers = bearer_of(token) if token else {}
            response = client.request(method, url, headers=headers, json=body)
            if response.status_code != 401:
                let_through.append(f"{method} {url} with a {name} token: {response.status_code}")
        role = needed_role(method, path)
        for name in LACKING[role]:
            response = client.request(method, url, headers=bearer_of(holders[name]), json=body)
            forbidden += 1
            if response.status_code != 403 or role not in response.json()["detail"]:
                let_through.append(f"{method} {url} as {name}: {response.status_code}")
    assert not let_through, "\n".join(let_through)
    assert snapshot(rt) == before
    refusals = [r.getMessage() for r in caplog.records if r.name == "itilflow.gateway.auth"]
    assert len(refusals) == forbidden
    assert any("'zhou'" in line and "needs the role reporter" in line for line in refusals)


def _expired_token(rt: Any) -> str:
    with session_scope(rt.engine) as session:
        plain, _ = principals.create_token(
            session=session,
            principal="alertmanager",
            kind="integration",
            created_by="test",
            expires_in=timedelta(days=1),
            now=principals._now() - timedelta(days=2),
        )
        principals.grant_role(
            session=session,
            role="admin",
            subject_kind="integration",
            subject="alertmanager",
            granted_by="test",
        )
    return plain


def test_a_blank_or_malformed_bearer_is_refused_even_with_a_blank_token_stored(
    gateway: Any, rt: Any
) -> None:
    _, client, _ = gateway
    for header in ("Bearer", "Bearer ", "Bearer  ", "bearer\t", "Basic x", ""):
        response = client.get("/api/incidents", headers={"Authorization": header})
        assert response.status_code == 401, header


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/incidents/{incident}/resolve", {"note": "fixed", "actor": "zhou"}),
        ("/api/incidents/{incident}/comment", {"actor": None}),
        ("/api/problems/{problem}/comment", {"note": "x", "actor": "zhou"}),
        ("/api/changes", {"title": "t", "plan": PLAN, "requester": "zhou"}),
    ],
)
def test_a_body_claiming_who_acts_is_refused(
    gateway: Any, rt: Any, path: str, body: dict[str, Any]
) -> None:
    """Names were claims ("zhou resolved" from {"actor": "zhou"}): now the field itself is
    refused, whoever sends it, and nothing is written."""
    _, client, seeds = gateway
    url = path.format(
        incident=seeds["/api/incidents/"]["ref"], problem=seeds["/api/problems/"]["ref"]
    )
    before = snapshot(rt)
    response = client.post(url, json=body, headers=_bootstrap(rt))
    assert response.status_code == 422, response.text
    text = str(response.json()["detail"])
    assert "not accepted" in text and "authenticated principal" in text
    assert snapshot(rt) == before


def test_the_actor_is_the_authenticated_principal(gateway: Any, rt: Any) -> None:
    _, client, seeds = gateway
    ref = seeds["/api/incidents/"]["ref"]
    lin = bearer_of(token_for(rt.engine, "lin", ("agent",)))
    assert client.post(f"/api/incidents/{ref}/comment", json={"note": "hi"}, headers=lin).is_success
    opened = client.post("/api/incidents", json={"title": "Printer jam"}, headers=lin).json()
    with Session(rt.engine) as session:
        actors = {
            (e.incident_id, e.kind): e.actor
            for e in session.exec(select(TimelineEntry).order_by(col(TimelineEntry.id)))
        }
    incident_id = client.get(f"/api/incidents/{ref}", headers=lin).json()["id"]
    assert actors[(incident_id, "commented")] == "lin"
    assert actors[(opened["id"], "opened")] == "lin"
    # The bootstrap token acts as the admin, by that name.
    seeded = client.get(f"/api/incidents/{ref}/timeline", headers=_bootstrap(rt)).json()
    assert seeded[0]["actor"] == principals.BOOTSTRAP_ADMIN


def test_a_person_requests_a_change_as_themselves_and_only_they_or_a_manager_alter_it(
    gateway: Any, rt: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, client, _ = gateway
    lin = bearer_of(token_for(rt.engine, "lin", ("reporter",)))
    li = bearer_of(token_for(rt.engine, "li", ("agent",)))
    manager = bearer_of(token_for(rt.engine, "wang", ("change_manager",)))
    spoofed = {"title": "t", "plan": PLAN, "requester_email": "attacker@example.net"}
    refused = client.post("/api/changes", json=spoofed, headers=lin)
    assert refused.status_code == 422 and "directory" in refused.json()["detail"]
    created = client.post("/api/changes", json={"title": "Add VLAN", "plan": PLAN}, headers=lin)
    assert created.status_code == 201, created.text
    number = created.json()["number"]
    with Session(rt.engine) as session:
        change = session.get(Change, created.json()["id"])
        assert change is not None
        assert (change.requester, change.requester_email) == ("lin", "lin@example.com")
    before = snapshot(rt)
    caplog.set_level(logging.WARNING, logger="itilflow.gateway.changes")
    edit = client.patch(f"/api/changes/{number}", json={"title": "mine now"}, headers=li)
    cancel = client.post(f"/api/changes/{number}/cancel", json={}, headers=li)
    assert edit.status_code == cancel.status_code == 403
    assert "requester or a change_manager" in cancel.json()["detail"]
    assert snapshot(rt) == before
    assert sum("'li'" in r.getMessage() for r in caplog.records) == 2
    assert client.patch(f"/api/changes/{number}", json={"title": "v2"}, headers=lin).is_success
    cancelled = client.post(f"/api/changes/{number}/cancel", json={}, headers=manager)
    assert cancelled.json()["status"] == "cancelled"
    entries = client.get(f"/api/changes/{number}/timeline", headers=lin).json()
    assert [(e["kind"], e["actor"]) for e in entries] == [
        ("submitted", "lin"),
        ("edited", "lin"),
        ("cancelled", "wang"),
    ]


def test_an_integration_names_where_its_changes_outcome_goes(gateway: Any, rt: Any) -> None:
    _, client, _ = gateway
    token = token_for(rt.engine, "ci-bot", ("reporter",), kind="integration")
    body = {"title": "Rotate certs", "plan": PLAN, "requester_email": "ops@example.com"}
    created = client.post("/api/changes", json=body, headers=bearer_of(token))
    assert created.status_code == 201, created.text
    with Session(rt.engine) as session:
        change = session.get(Change, created.json()["id"])
        assert change is not None
        assert (change.requester, change.requester_email) == ("ci-bot", "ops@example.com")


def test_a_revocation_or_role_change_reaches_the_gateway_within_the_cache_ttl(
    gateway: Any, rt: Any
) -> None:
    app, client, _ = gateway
    cache = app.state.gateway.tokens
    cache.ttl = 0.5
    lin = bearer_of(token_for(rt.engine, "lin", ("agent",)))
    assert client.get("/api/incidents", headers=lin).status_code == 200
    with session_scope(rt.engine) as session:
        principals.revoke_role(session=session, role="agent", subject_kind="person", subject="lin")
        row = session.exec(select(ApiToken).where(ApiToken.principal == "lin")).one()
        principals.revoke_token(session=session, token_id=row.id, revoked_by="test")
    # Within the TTL the remembered principal still answers (the documented delay) ...
    assert client.get("/api/incidents", headers=lin).status_code == 200
    time.sleep(0.6)
    # ... and after it the revocation holds.
    refused = client.get("/api/incidents", headers=lin)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"


def test_a_token_expiring_before_the_ttl_is_refused_when_it_expires(gateway: Any, rt: Any) -> None:
    _, client, _ = gateway
    short = token_for(rt.engine, "lin", ("agent",), expires_in=timedelta(seconds=1))
    assert client.get("/api/incidents", headers=bearer_of(short)).status_code == 200
    time.sleep(1.1)  # the cache's TTL is 5 s: the entry must not outlive the token
    assert client.get("/api/incidents", headers=bearer_of(short)).status_code == 401


def test_the_cache_looks_a_token_up_once_per_ttl_and_notes_its_last_use(
    gateway: Any, rt: Any
) -> None:
    _, client, _ = gateway
    token = token_for(rt.engine, "alertmanager", ("reporter",), kind="integration")
    for _ in range(20):
        response = client.post("/api/alertmanager", json=_webhook(), headers=bearer_of(token))
        assert response.status_code == 200, response.text
    with Session(rt.engine) as session:
        row = session.exec(select(ApiToken).where(ApiToken.principal == "alertmanager")).one()
        assert row.last_used_at is not None
        entries = session.exec(select(TimelineEntry).where(TimelineEntry.kind == "opened")).all()
        assert {e.actor for e in entries if e.actor != principals.BOOTSTRAP_ADMIN} <= {
            "alertmanager"
        }


def _webhook() -> dict[str, Any]:
    return json.loads((PAYLOADS / "firing.json").read_text())


def test_token_cache_shares_one_lookup_between_concurrent_requests(rt: Any) -> None:
    import asyncio

    from itilflow.gateway.deps import TokenCache

    token = token_for(rt.engine, "lin", ("agent",))
    cache = TokenCache(rt.engine)
    lookups: list[str] = []
    original = cache._look_up

    def counting(plain: str) -> Any:
        lookups.append(plain)
        time.sleep(0.05)
        return original(plain)

    cache._look_up = counting  # type: ignore[method-assign]

    async def many() -> list[Any]:
        return await asyncio.gather(*(cache.principal(token) for _ in range(20)))

    found = asyncio.run(many())
    assert {p.name for p in found} == {"lin"} and len(lookups) == 1
    assert asyncio.run(cache.principal(principals.new_token())) is None


def test_a_token_lookup_the_database_cannot_answer_is_a_503_not_a_pass(
    gateway: Any, rt: Any
) -> None:
    from sqlalchemy.exc import OperationalError

    app, client, _ = gateway
    token = token_for(rt.engine, "alertmanager", ("reporter",), kind="integration")

    def unavailable(plain: str) -> Any:
        raise OperationalError("SELECT", {}, Exception("database is locked"))

    app.state.gateway.tokens._look_up = unavailable
    before = snapshot(rt)
    response = client.post("/api/alertmanager", json=_webhook(), headers=bearer_of(token))
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert snapshot(rt) == before
