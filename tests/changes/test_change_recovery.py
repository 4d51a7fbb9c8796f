"""The pieces of recovering a lost change run, without workers: what the timeline says the lost
run had done, the one claim that wins, and the fence that stops a run declared lost.

The whole recovery, with real workers and a host killed mid-step: tests/faults/."""

from __future__ import annotations

import asyncio

import pytest
from prefect import flow

from itilflow.executors import PlanAbandoned
from itilflow.models import ChangeStatus, add_change_entry, get_change_timeline, session_scope
from itilflow.services import changes
from itilflow.tasks.change.run_change_action import run_change_action

PLAN = {
    "steps": [
        {
            "name": name,
            "do": {"kind": "shell", "command": "true"},
            "undo": {"kind": "shell", "command": "true"},
        }
        for name in ("a", "b", "c")
    ]
}


def new_change(rt, status: ChangeStatus, flow_run_id: str | None) -> int:
    with session_scope(rt.engine) as session:
        change = changes.submit_change(
            session=session, new=changes.NewChange(title="t", plan=PLAN), actor="test"
        )
        change.status = status
        change.flow_run_id = flow_run_id
        session.add(change)
        session.flush()
        assert change.id is not None
        return change.id


def write(rt, change_id: int, *entries: tuple[str, str | None, str | None]) -> None:
    with session_scope(rt.engine) as session:
        for kind, phase, name in entries:
            data = {"phase": phase, "name": name} if phase else {}
            add_change_entry(
                session=session, change_id=change_id, kind=kind, actor="test", data=data
            )


def interruption(rt, change_id: int) -> changes.Interruption:
    with session_scope(rt.engine) as session:
        return changes.read_interruption(get_change_timeline(session=session, change_id=change_id))


def test_the_timeline_tells_which_steps_started_and_which_action_never_finished(rt):
    change_id = new_change(rt, ChangeStatus.implementing, "run-1")
    write(
        rt,
        change_id,
        ("implementation_started", None, None),
        ("backup_started", "backup", "save"),
        ("backup_ok", "backup", "save"),
        ("step_started", "step", "a"),
        ("step_ok", "step", "a"),
        ("step_started", "step", "b"),
    )
    assert interruption(rt, change_id) == changes.Interruption(
        started_steps=["a", "b"], in_flight=("step", "b")
    )


def test_a_run_lost_during_its_own_rollback_rolls_back_every_step_it_started(rt):
    change_id = new_change(rt, ChangeStatus.implementing, "run-1")
    write(
        rt,
        change_id,
        ("implementation_started", None, None),
        ("step_started", "step", "a"),
        ("step_ok", "step", "a"),
        ("step_started", "step", "b"),
        ("step_failed", "step", "b"),
        ("rollback_started", "rollback", "b"),
    )
    found = interruption(rt, change_id)
    assert found.started_steps == ["a", "b"]
    assert found.in_flight == ("rollback", "b")


def test_only_the_latest_attempt_counts(rt):
    change_id = new_change(rt, ChangeStatus.implementing, "run-2")
    write(
        rt,
        change_id,
        ("implementation_started", None, None),
        ("step_started", "step", "a"),
        ("step_started", "step", "b"),
        ("reviewed", None, None),
        ("implementation_started", None, None),
        ("step_started", "step", "a"),
        ("step_ok", "step", "a"),
    )
    assert interruption(rt, change_id) == changes.Interruption(started_steps=["a"], in_flight=None)


def test_of_two_recoveries_of_one_lost_run_only_one_claims_the_change(rt):
    change_id = new_change(rt, ChangeStatus.implementing, "lost")
    claims = []
    for recovery in ("recovery-1", "recovery-2"):
        with session_scope(rt.engine) as session:
            claims.append(
                changes.take_over_change(
                    session=session, change_id=change_id, lost_run_id="lost", new_run_id=recovery
                )
            )
    assert claims == [True, False]
    finished = new_change(rt, ChangeStatus.successful, "lost-too")
    with session_scope(rt.engine) as session:
        assert not changes.take_over_change(
            session=session, change_id=finished, lost_run_id="lost-too", new_run_id="r"
        )


@pytest.mark.usefixtures("prefect_server")
def test_a_run_that_no_longer_owns_the_change_stops_before_acting(rt, tmp_path):
    marker = tmp_path / "touched"
    change_id = new_change(rt, ChangeStatus.implementing, "the-recovery-run")

    @flow
    async def lost_run() -> None:
        await run_change_action(
            change_id, "step", "a", {"kind": "shell", "command": f"touch {marker}"}
        )

    with pytest.raises(PlanAbandoned, match="now belongs to run the-recovery-run"):
        asyncio.run(lost_run())
    assert not marker.exists()
    with session_scope(rt.engine) as session:
        kinds = [e.kind for e in get_change_timeline(session=session, change_id=change_id)]
    assert "step_started" not in kinds
