"""Every gateway route but the public ones needs the bearer token: walked from the app's own
route table, so a route added later is checked without anyone remembering to.

Public, and why:
- `/health`: liveness probes (systemd, load balancers) carry no token; it says only "ok".
- `/openapi.json`, `/docs`, `/docs/oauth2-redirect`, `/redoc`: the API's description, no data;
  the README sends people to /docs. `/docs/assets/{name}`: those pages' Swagger UI and ReDoc
  files, served by the gateway (no CDN), four fixed names (tests/gateway/test_api_docs.py).
- `/surveys/{token}`, `/approvals/{token}`, `/acceptance/{token}`: opened from a mailed link by
  reporters, approvers and requesters
  who have no API token; the signed, expiring token in the path is the authorisation, checked
  here too (a bad one shows the bad-link page, never the incident or change).
- `/calendars/oncall/{token}.ics`: a person's on-call shifts for their calendar app, which sends
  no token; the signed token in the path, revocable, is the authorisation.
- the sign-in pages (`/signin...`, `/signout`): where a person without a token signs in; they
  show a form or take a one-time code or link, and start nothing but a browser session
  (tests/security/test_signin.py).
- the console's pages (every path outside /api: /incidents...): a browser's session is their
  authorisation, never a bearer token. Signed out (whatever Authorization header, the API token
  too) they answer a redirect to /signin?next=<the page>, or 401 for a page's live part, and
  change nothing (tests/console/).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from itilflow.gateway.app import create_app
from itilflow.models import Change, FlowTrigger, Incident, TimelineEntry

from .gateway_support import RecordingChangeEngine, bearer, seed_objects

PUBLIC = {
    "/health",
    "/health/live",
    "/health/ready",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/docs/assets/{name}",
}
SIGNED_LINK_PAGES = {"/surveys/{token}", "/approvals/{token}", "/acceptance/{token}"}
# A person's secret on-call calendar feed for calendar apps (which send no token): the signed,
# revocable token in the path is the authorisation (tests/oncall/test_oncall_api.py).
SIGNED_FEEDS = {"/calendars/oncall/{token}.ics"}
SIGNIN_PAGES = {
    "/signin",
    "/signin/code",
    "/signin/link/{token}",
    "/signin/oidc",
    "/signin/oidc/callback",
    "/signout",
}
WRONG_AUTHORIZATIONS = {
    "no header": None,
    "empty": "",
    "scheme only": "Bearer",
    "wrong token": "Bearer not-the-token",
    "another scheme": "Basic {token}",
    "token without scheme": "{token}",
    "token with a suffix": "Bearer {token}x",
    "token cut short": "Bearer {short}",
}


def routes(app: Any) -> Iterator[tuple[str, str]]:
    """(method, path) of every route the app serves, included routers' routes too."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # before FastAPI 0.150 the app's route list was already flat
        contexts: Any = app.routes
    else:
        contexts = iter_route_contexts(app.routes)
    for route in contexts:
        for method in sorted(getattr(route, "methods", None) or ()):
            yield method, route.path


# Outside /api but for tools, with a bearer token like the API (from elsewhere than loopback:
# the test client is elsewhere; tests/observability/test_gateway_metrics.py has the rest).
TOOL_PAGES = {"/metrics"}


def console_page(path: str) -> bool:
    """A page of the web console: outside /api, and none of the public or tools' pages above."""
    return not path.startswith("/api") and path not in (
        PUBLIC | SIGNED_LINK_PAGES | SIGNED_FEEDS | SIGNIN_PAGES | TOOL_PAGES
    )


def sent_to_signin(response: Any) -> bool:
    """A signed-out browser's answer from a console page: to the sign-in page, or 401."""
    location = response.headers.get("location", "")
    return response.status_code == 401 or (
        response.status_code == 303 and location.startswith("/signin?next=")
    )


def concrete(path: str, seeds: dict[str, dict[str, str]]) -> str:
    """The path with real objects' references (so a missing check would find data)."""
    values = next((v for prefix, v in seeds.items() if path.startswith(prefix)), {})
    defaults = {"action": "comment", "target": "web-01"}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m[1]) or defaults.get(m[1], "1"), path)


@pytest.fixture
def gateway(rt: Any) -> Iterator[tuple[Any, TestClient, dict[str, dict[str, str]]]]:
    app = create_app(rt.settings, rt.policies, change_engine=RecordingChangeEngine())
    with TestClient(app) as client:
        with TestClient(app, headers=bearer(rt)) as authorised:
            seeds = seed_objects(authorised, rt)
        yield app, client, seeds


def stored(rt: Any) -> tuple[int, ...]:
    with Session(rt.engine) as session:
        return tuple(
            session.exec(select(func.count()).select_from(table)).one()
            for table in (Incident, TimelineEntry, FlowTrigger, Change)
        )


def test_every_route_but_the_public_ones_needs_the_token(
    gateway: Any, rt: Any, fault_figures: Any
) -> None:
    app, client, seeds = gateway
    token = rt.settings.api_token.get_secret_value()
    table = sorted(set(routes(app)))
    in_schema = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    # The walk sees at least what the OpenAPI lists: nothing hides in an included router.
    assert in_schema <= set(table), in_schema - set(table)
    before = stored(rt)
    checked: list[tuple[str, str]] = []
    let_through: list[str] = []
    for method, path in table:
        if path in PUBLIC | SIGNED_LINK_PAGES | SIGNED_FEEDS | SIGNIN_PAGES:
            continue
        checked.append((method, path))
        url = concrete(path, seeds)
        body = {"title": "t", "note": "n", "alerts": []} if method in {"POST", "PATCH"} else None
        tries = dict(WRONG_AUTHORIZATIONS)
        if console_page(path):  # the API's token does not sign a browser in
            tries["the API token"] = "Bearer {token}"
        for name, template in tries.items():
            headers = {}
            if template is not None:
                headers["Authorization"] = template.format(token=token, short=token[:-1])
            response = client.request(
                method, url, headers=headers, json=body, follow_redirects=False
            )
            if console_page(path):
                refused = sent_to_signin(response)
            else:
                refused = response.status_code == 401 and (
                    response.headers.get("www-authenticate") == "Bearer"
                )
            if not refused:
                let_through.append(f"{method} {url} with {name}: {response.status_code}")
        # HEAD on a GET route is refused too, never answered with the data's headers.
        if method == "GET":
            head = client.head(url, follow_redirects=False)
            if head.status_code not in (401, 405) and not (
                console_page(path) and sent_to_signin(head)
            ):
                let_through.append(f"HEAD {url}: {head.status_code}")
    fault_figures(
        "auth on every route",
        routes=len(table),
        checked=len(checked),
        public=len(
            {p for _, p in table} & (PUBLIC | SIGNED_LINK_PAGES | SIGNED_FEEDS | SIGNIN_PAGES)
        ),
        requests=len(checked) * len(WRONG_AUTHORIZATIONS),
        let_through=len(let_through),
    )
    protected = {
        (m, p)
        for m, p in in_schema
        if p not in PUBLIC | SIGNED_LINK_PAGES | SIGNED_FEEDS | SIGNIN_PAGES
    }
    assert protected and protected <= set(checked)
    assert not let_through, "\n".join(let_through)
    assert stored(rt) == before


def test_the_walk_finds_a_route_added_later(gateway: Any) -> None:
    app, client, _ = gateway
    router = APIRouter(prefix="/api/later")

    @router.get("/{thing}", include_in_schema=False)
    def forgotten(thing: str) -> dict[str, str]:
        return {"thing": thing}

    app.include_router(router)
    assert ("GET", "/api/later/{thing}") in set(routes(app))
    assert client.get("/api/later/x").status_code == 200  # what the walk above would report


def test_the_public_routes_are_only_these(gateway: Any) -> None:
    app, client, seeds = gateway
    unauthenticated = {
        path
        for method, path in routes(app)
        if not sent_to_signin(client.request(method, concrete(path, seeds), follow_redirects=False))
    }
    signin_routes = {path for _, path in routes(app)} & SIGNIN_PAGES
    assert unauthenticated == PUBLIC | SIGNED_LINK_PAGES | SIGNED_FEEDS | signin_routes
    assert client.get("/health").json() == {"status": "ok"}


@pytest.mark.parametrize("page", sorted(SIGNED_LINK_PAGES))
def test_signed_link_pages_open_by_their_token_alone(gateway: Any, rt: Any, page: str) -> None:
    _, client, seeds = gateway
    good = concrete(page, seeds)
    opened = client.get(good)
    assert opened.status_code == 200 and '<form method="post">' in opened.text
    before = stored(rt)
    prefix = page.split("{")[0]
    # The API token opens nothing here: without a valid signed token the page says so.
    for bad in ("garbage", good.rsplit(".", 1)[0] + ".AAAA"):
        for method in ("GET", "POST"):
            response = client.request(
                method,
                bad if bad.startswith("/") else prefix + bad,
                headers=bearer(rt),
                data={"score": "5", "decision": "approve"},
            )
            assert response.status_code == 400, response.text
            assert "Seed" not in response.text  # neither the incident's nor the change's title
    assert stored(rt) == before
