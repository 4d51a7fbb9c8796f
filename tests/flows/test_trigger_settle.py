"""A trigger is marked done when its run completed, unless its deadline moved into the future
while the run held it: then it is pending again at the new time (a timer whose incident resumed
during the run must still fire later). Against the real database (SQLite, or PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from itilflow import clock
from itilflow.models import (
    FlowTrigger,
    IncidentCreate,
    add_trigger,
    claim_due_triggers,
    finish_trigger,
    session_scope,
)
from itilflow.services import incidents

pytestmark = pytest.mark.postgres


def one_incident(rt) -> int:
    new = [IncidentCreate(title="disk full", category="software", impact="low", urgency="low")]
    with session_scope(rt.engine) as session:
        opened = incidents.open_incidents(
            session=session, new=new, dedup_keys=[None], policies=rt.policies, actor="test"
        )
        return opened[0]


def claimed_timer(rt, incident_id: int) -> int:
    with session_scope(rt.engine) as session:
        trigger = add_trigger(
            session=session,
            incident_id=incident_id,
            kind="customer_update",
            key="settle-test",
            due_at=clock.now() - timedelta(seconds=1),
        )
        session.flush()
        trigger_id = trigger.id
    with session_scope(rt.engine) as session:
        claimed = claim_due_triggers(
            session=session, runner="test", limit=100, lease=timedelta(minutes=5)
        )
        assert trigger_id in [t.id for t in claimed]
    return trigger_id


def settle(rt, trigger_id: int, *, move_to=None) -> FlowTrigger:
    with session_scope(rt.engine) as session:
        if move_to is not None:
            session.get(FlowTrigger, trigger_id).due_at = move_to
            session.flush()
        finish_trigger(session=session, trigger_id=trigger_id, flow_run_id="run-1")
    with session_scope(rt.engine) as session:
        return session.get(FlowTrigger, trigger_id)


def test_a_trigger_that_ran_is_done(rt):
    trigger = settle(rt, claimed_timer(rt, one_incident(rt)))
    assert trigger.done_at is not None and trigger.flow_run_id == "run-1"


def test_a_trigger_whose_deadline_moved_while_it_ran_stays_pending_at_the_new_time(rt):
    later = clock.now() + timedelta(minutes=30)
    trigger = settle(rt, claimed_timer(rt, one_incident(rt)), move_to=later)
    assert trigger.done_at is None, "marked done, it would never fire at its new deadline"
    assert trigger.claimed_until is None, "its claim released: claimable when due"
    assert trigger.due_at == later
