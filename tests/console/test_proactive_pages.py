"""The proactive notice pages (/proactive, /proactive/PRO-...): what they show, who sees them,
who may accept or decline through the forms (CSRF included), and where accepting leads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from itilflow import clock
from itilflow.gateway.app import create_app
from itilflow.models import ProactiveNotice, session_scope
from itilflow.policies.proactive import Prediction
from itilflow.services.directory import Record, save_records
from itilflow.services.proactive import Observation, observe
from tests.console.support import HOSTILE, assert_escaped, sign_in
from tests.support.csrf import csrf_of, post_form


class StartedChanges:
    """The change engine's side of accepting: which change runs were started (the change's own
    run is the change tests'; with no Prefect server here, starting one would wait on it)."""

    def __init__(self) -> None:
        self.started: list[int] = []

    async def start(self, change_id: int) -> str | None:
        self.started.append(change_id)
        return None

    async def cancel(self, flow_run_id: str) -> None:
        raise AssertionError("nothing is cancelled here")


@pytest.fixture
def started_changes() -> StartedChanges:
    return StartedChanges()


@pytest.fixture
def app(rt: Any, started_changes: StartedChanges) -> Any:
    return create_app(rt.settings, rt.policies, change_engine=started_changes)


@pytest.fixture
def browsers(app: Any) -> Iterator[Any]:
    opened: list[TestClient] = []

    def browser() -> TestClient:
        client = TestClient(app, follow_redirects=False)
        client.__enter__()
        opened.append(client)
        return client

    yield browser
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def notice(rt) -> ProactiveNotice:
    """A disk on db-1 (owned by dba) foreseen full in two days."""
    with session_scope(rt.engine) as session:
        save_records(
            session,
            [
                Record(
                    "cis",
                    {
                        "name": "db-1",
                        "kind": "database",
                        "owner_group": "dba",
                        "attributes": {"volume": "vg0/data", "note": HOSTILE},
                    },
                )
            ],
        )
        prediction = Prediction(
            "disk_fill", HOSTILE, clock.now() + timedelta(days=2), {"item": "/srv"}
        )
        seen = Observation("db-1", "disk_fill", "node-1", "node.filesystem_fill", prediction, True)
        [event] = observe(session, rt.policies, seen, now=clock.now(), run_id=None)
    with Session(rt.engine) as session:
        found = session.get(ProactiveNotice, event.proactive_id)
        assert found is not None
        return found


def test_the_owner_group_sees_the_notice_and_accepts_it_into_a_change(
    rt, browsers, notice, started_changes
) -> None:
    sun = sign_in(rt, browsers(), "sun", ["agent"])
    listed = sun.get("/proactive")
    assert listed.status_code == 200 and notice.number in listed.text
    page = sun.get(f"/proactive/{notice.number}")
    assert page.status_code == 200, page.text
    assert_escaped(page.text)
    assert 'id="accept-form"' in page.text and 'name="p_volume" value="vg0/data"' in page.text
    # Declining needs a reason; the form refuses an empty one.
    empty = post_form(sun, f"/proactive/{notice.number}", {"action": "decline", "reason": " "})
    assert empty.status_code == 200 and "Declining needs a reason." in empty.text
    accepted = post_form(
        sun, f"/proactive/{notice.number}", {"action": "accept", "p_gigabytes": "30"}
    )
    assert accepted.status_code == 303, accepted.text
    assert accepted.headers["location"].startswith("/changes/CHG-")
    with Session(rt.engine) as session:
        stored = session.get(ProactiveNotice, notice.id)
        assert stored is not None and stored.status == "accepted"
        # The form's text, checked by the template's int parameter when the change was built.
        assert stored.parameters == {"host": "db-1", "volume": "vg0/data", "gigabytes": "30"}
        assert started_changes.started == [stored.change_id]
    after = sun.get(f"/proactive/{notice.number}")
    assert 'id="accept-form"' not in after.text and 'id="change"' in after.text


def test_others_see_no_form_and_are_refused(rt, browsers, notice) -> None:
    url = f"/proactive/{notice.number}"
    chen = sign_in(rt, browsers(), "chen", ["agent"])
    page = chen.get(url)
    assert page.status_code == 200 and 'id="accept-form"' not in page.text
    refused = post_form(chen, url, {"action": "decline", "reason": "not ours"})
    assert refused.status_code == 403
    li = sign_in(rt, browsers(), "li", ["reporter"])
    assert li.get(url).status_code == 403
    assert li.get("/proactive").status_code == 403
    signed_out = browsers().get(url)
    assert signed_out.status_code == 303 and signed_out.headers["location"].startswith("/signin")
    # The owner group's agent without the page's CSRF field: refused, nothing decided.
    sun = sign_in(rt, browsers(), "sun", ["agent"])
    assert csrf_of(sun.get(url).text)
    forged = sun.post(url, data={"action": "decline", "reason": "forged"})
    assert forged.status_code == 403
    with Session(rt.engine) as session:
        stored = session.get(ProactiveNotice, notice.id)
        assert stored is not None and stored.status == "proposed"
    declined = post_form(sun, url, {"action": "decline", "reason": "moving the data tonight"})
    assert declined.status_code == 303
    again = post_form(sun, url, {"action": "decline", "reason": "twice"})
    assert "declined" in again.text and 'id="decline-form"' not in again.text
