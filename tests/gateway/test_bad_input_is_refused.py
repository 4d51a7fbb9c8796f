"""What schemathesis found (tests/faults/test_gateway_fuzz.py): each input below once made the
gateway answer 500. Each is now a 4xx that says what is wrong, and nothing is stored."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from itilflow.gateway.app import create_app
from itilflow.models import Change, ChangeEntry, ChangeStatus, session_scope
from itilflow.policies import ROOT_CAUSE_CATEGORIES
from itilflow.services import changes
from tests.faults.gateway_support import PLAN, RecordingChangeEngine, bearer, seed_objects


@pytest.fixture
def client(rt: Any) -> Iterator[TestClient]:
    """The gateway with change runs recorded, not started (no Prefect server needed)."""
    app = create_app(rt.settings, rt.policies, change_engine=RecordingChangeEngine())
    with TestClient(app, headers=bearer(rt)) as test_client:
        yield test_client


# More digits than a 64-bit row id holds: SQLite's driver raised OverflowError on it.
TOO_BIG = "9" * 30


@pytest.mark.parametrize("path", ["/api/incidents", "/api/problems"])
def test_an_offset_past_any_page_is_refused(client: Any, path: str) -> None:
    response = client.get(path, params={"offset": 10**25})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "offset"]
    assert client.get(path, params={"offset": 10**9}).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        f"/api/incidents/{TOO_BIG}",
        f"/api/incidents/INC-{TOO_BIG}/timeline",
        f"/api/incidents/{TOO_BIG}/sla",
        f"/api/changes/CHG-{TOO_BIG}",
        f"/api/changes/{TOO_BIG}/timeline",
        f"/api/problems/{TOO_BIG}",
        f"/api/problems/PRB-{TOO_BIG}/timeline",
        f"/api/knowledge/KB-{TOO_BIG}",
        "/api/incidents/١٢",  # Arabic-Indic digits: str.isdigit() says yes, no id is written so
    ],
)
def test_a_reference_no_row_can_have_is_not_found(client: Any, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404, response.text
    assert "not " in response.json()["detail"]


def test_acting_on_a_reference_no_row_can_have_stores_nothing(client: Any, rt: Any) -> None:
    response = client.post(f"/api/incidents/{TOO_BIG}/comment", json={"note": "hello"})
    assert response.status_code == 404, response.text
    refused = client.post(f"/api/changes/{TOO_BIG}/cancel", json={"note": "no"})
    assert refused.status_code == 404, refused.text


def test_a_fix_naming_a_change_no_row_can_have_is_refused(client: Any, rt: Any) -> None:
    seeds = seed_objects(client, rt)
    problem = seeds["/api/problems/"]["ref"]
    analysed = client.post(
        f"/api/problems/{problem}/analyse",
        json={
            "whys": [{"why": "why did it fail", "answer": "the disk filled"}],
            "root_cause_category": ROOT_CAUSE_CATEGORIES[0],
        },
    )
    assert analysed.status_code == 200, analysed.text
    before = client.get(f"/api/problems/{problem}/timeline").json()
    response = client.post(f"/api/problems/{problem}/link_fix", json={"change": f"CHG-{TOO_BIG}"})
    assert response.status_code == 409, response.text
    assert "not a change number" in response.json()["detail"]
    assert client.get(f"/api/problems/{problem}/timeline").json() == before


@pytest.mark.parametrize("page", ["/surveys", "/approvals", "/acceptance"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_link_with_non_ascii_characters_shows_the_bad_link_page(
    client: Any, page: str, method: str
) -> None:
    # hmac.compare_digest raised TypeError on a str with non-ASCII characters.
    response = client.request(method, f"{page}/ÈuX.çé", data={"decision": "approve", "score": "5"})
    assert response.status_code == 400, response.text
    assert "altered" in response.text


@pytest.fixture
def change_number(client: Any, rt: Any) -> str:
    response = client.post("/api/changes", json={"title": "Rotate TLS certificate", "plan": PLAN})
    assert response.status_code == 201, response.text
    return response.json()["number"]


def stored(rt: Any, number: str) -> tuple[dict[str, Any], int]:
    with Session(rt.engine) as session:
        change = session.exec(select(Change)).one()
        assert change.number == number
        entries = session.exec(select(func.count()).select_from(ChangeEntry)).one()
        return change.model_dump(), entries


@pytest.mark.parametrize("field", ["title", "description", "category", "cis", "plan"])
def test_an_edit_that_nulls_what_a_change_always_has_is_refused(
    client: Any, rt: Any, change_number: str, field: str
) -> None:
    before = stored(rt, change_number)
    response = client.patch(f"/api/changes/{change_number}", json={field: None})
    assert response.status_code == 422, response.text
    assert f"{field} cannot be null" in response.text
    assert stored(rt, change_number) == before
    # The change still reads back and its approval page still renders.
    assert client.get(f"/api/changes/{change_number}").status_code == 200


def test_an_edit_may_clear_the_window(client: Any, rt: Any, change_number: str) -> None:
    response = client.patch(f"/api/changes/{change_number}", json={"planned_start": None})
    assert response.status_code == 200, response.text
    assert response.json()["planned_start"] is None


def test_the_approval_page_of_an_edited_change_still_renders(
    client: Any, rt: Any, change_number: str
) -> None:
    with session_scope(rt.engine) as session:
        change = session.exec(select(Change)).one()
        change.status = ChangeStatus.awaiting_approval
        request = changes.create_approval_request(
            session=session,
            change=change,
            stage="technical-lead",
            approver="chen",
            policies=rt.policies,
        )
        token = changes.approval_token(request, secret=rt.secret, policies=rt.policies)
    assert client.patch(f"/api/changes/{change_number}", json={"cis": None}).status_code == 422
    page = client.get(f"/approvals/{token}")
    assert page.status_code == 200 and '<form method="post">' in page.text
