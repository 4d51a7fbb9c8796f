"""A decision stored while nothing runs is never lost: the gateway stores a link's decision, then
starts the change's next run; if it dies in between (or the engine cannot be reached), the
scheduled `remind-approvers` finds the decided change without a live run and starts one, which
implements it. A change that only waits for people gets no run: waiting costs rows."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from itilflow.engine import PrefectChangeEngine
from itilflow.models import ApprovalRequest, Change, ChangeEntry, session_scope
from itilflow.services import changes
from itilflow.tasks.change.start_waiting_changes import start_waiting_changes
from tests.changes.conftest import InProcessChangeEngine
from tests.support.change_policy import without_calendar

pytestmark = pytest.mark.usefixtures("prefect_server")

PLAN = {
    "steps": [
        {
            "name": "noop",
            "do": {"kind": "shell", "command": "true"},
            "undo": {"kind": "shell", "command": "true"},
        }
    ]
}


def waiting_change(rt: Any, engine: InProcessChangeEngine, title: str) -> int:
    """A low-risk change whose first run asked its technical lead and ended."""
    with session_scope(rt.engine) as session:
        change = changes.submit_change(
            session=session, new=changes.NewChange(title=title, plan=PLAN), actor="test"
        )
        change_id = change.id
    assert change_id is not None
    asyncio.run(engine.start(change_id))
    engine.threads[-1].join(timeout=60)
    assert engine.results[change_id] == "awaiting approval"
    return change_id


def decide_as_the_gateway_then_die(rt: Any, change_id: int) -> None:
    """What the link's page stores before it starts the next run; nothing is started."""
    with session_scope(rt.engine) as session:
        request = session.exec(
            select(ApprovalRequest).where(ApprovalRequest.change_id == change_id)
        ).first()
        assert request is not None
        changes.decide(session=session, request=request, decision="approve", comment="", via="link")


def test_a_decision_stored_while_nothing_ran_is_implemented(rt, monkeypatch):
    without_calendar(rt)  # no planned start, no windows: approved means implemented now
    engine = InProcessChangeEngine()
    decided = waiting_change(rt, engine, "decided, then the gateway died")
    untouched = waiting_change(rt, engine, "waits for its approvers")
    decide_as_the_gateway_then_die(rt, decided)

    monkeypatch.setattr(
        PrefectChangeEngine, "start", lambda self, change_id: engine.start(change_id)
    )
    started = asyncio.run(start_waiting_changes.fn(older_than=timedelta(0)))
    assert started == 1  # the decided change; the other waits for people, with no run
    for thread in engine.threads:
        thread.join(timeout=60)

    with Session(rt.engine) as session:
        assert session.get(Change, decided).status.value == "successful"
        assert session.get(Change, untouched).status.value == "awaiting_approval"
        restarted = session.exec(
            select(ChangeEntry).where(ChangeEntry.kind == "process_restarted")
        ).all()
    assert [(e.change_id, e.actor) for e in restarted] == [(decided, "flow:remind-approvers")]
    assert "approved while no run was there" in restarted[0].message
    # Once carried on, nothing is started again.
    assert asyncio.run(start_waiting_changes.fn(older_than=timedelta(0))) == 0
