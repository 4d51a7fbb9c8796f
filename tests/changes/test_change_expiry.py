"""A change runs out of time two ways: approved after its window closed (check-window), or no
decision within the approval time (remind-approvers' expire-unanswered-changes: no run waits
with the change, so the scheduled check is its timer). Both leave it expired, on the record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from itilflow import clock
from itilflow.models import ApprovalRequest, Change, ChangeEntry, ChangeStatus, session_scope
from itilflow.tasks.change.check_window import check_window
from itilflow.tasks.change.expire_unanswered_changes import expire_unanswered_changes
from tests.support.approval_codes import make_waiting_change

PLAN = {
    "steps": [
        {
            "name": "noop",
            "do": {"kind": "shell", "command": "true"},
            "undo": {"kind": "shell", "command": "true"},
        }
    ]
}


def expired_entries(rt, change_id: int) -> list[str]:
    with Session(rt.engine) as session:
        return [
            entry.message
            for entry in session.exec(
                select(ChangeEntry).where(
                    ChangeEntry.change_id == change_id, ChangeEntry.kind == "expired"
                )
            )
        ]


def test_a_window_that_closed_before_the_approval_expires_the_change(rt):
    change, _ = make_waiting_change(rt, PLAN)
    with session_scope(rt.engine) as session:
        stored = session.get(Change, change.id)
        stored.status = ChangeStatus.approved
        stored.planned_start = clock.now() - timedelta(hours=2)
        stored.planned_end = clock.now() - timedelta(hours=1)

    window = check_window.fn(change.id, change.version)

    assert window.when == "missed" and window.at is None
    with Session(rt.engine) as session:
        assert session.get(Change, change.id).status == ChangeStatus.expired
    assert expired_entries(rt, change.id) == ["approved after its window closed; plan a new window"]


def test_a_window_to_come_is_later_and_an_open_one_now(rt):
    # Saturday noon in Shanghai: inside change.yaml's weekend window (without a planned start a
    # change waits for one: tests/security/test_approvals.py).
    clock.freeze(datetime(2026, 12, 5, 4, 0, tzinfo=UTC))
    change, _ = make_waiting_change(rt, PLAN)
    start = clock.now() + timedelta(hours=1)
    with session_scope(rt.engine) as session:
        stored = session.get(Change, change.id)
        stored.planned_start, stored.planned_end = start, start + timedelta(hours=1)

    window = check_window.fn(change.id, change.version)
    assert (window.when, window.at) == ("later", start.isoformat())

    with session_scope(rt.engine) as session:
        session.get(Change, change.id).planned_start = None
    assert check_window.fn(change.id, change.version).when == "now"
    assert expired_entries(rt, change.id) == []


def test_no_decision_in_time_expires_the_change_and_voids_its_links(rt):
    clock.freeze(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    change, _ = make_waiting_change(rt, PLAN)
    expire_after = rt.policies.change.timing.expire_after

    clock.advance(expire_after - timedelta(minutes=1))
    assert expire_unanswered_changes.fn() == []  # not yet: nothing changes
    with Session(rt.engine) as session:
        assert session.get(Change, change.id).status == ChangeStatus.awaiting_approval

    clock.advance(timedelta(minutes=1))
    assert expire_unanswered_changes.fn() == [change.id]
    assert expire_unanswered_changes.fn() == []  # once

    with Session(rt.engine) as session:
        assert session.get(Change, change.id).status == ChangeStatus.expired
        requests = session.exec(
            select(ApprovalRequest).where(ApprovalRequest.change_id == change.id)
        ).all()
    assert requests and all(r.voided_at is not None for r in requests)
    assert expired_entries(rt, change.id) == [
        "no decision within the approval time; the links are void"
    ]
