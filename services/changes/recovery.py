"""Recovery of a change whose run was lost: who takes it over, and where the lost run stopped."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import Session, col

from itilflow import clock
from itilflow.models import (
    Change,
    ChangeEntry,
    ChangeStatus,
)

# A run that dies with these statuses left the change half done: it is taken over and rolled back.
MID_IMPLEMENTATION = (ChangeStatus.implementing, ChangeStatus.crashed)
# A run that dies with these statuses was waiting for decisions: the process is started again.
AWAITING_DECISIONS = (ChangeStatus.submitted, ChangeStatus.awaiting_approval)


def take_over_change(
    *, session: Session, change_id: int, lost_run_id: str, new_run_id: str | None
) -> bool:
    """Make `new_run_id` the change's run if `lost_run_id` still is, in one conditional UPDATE.

    The run id on the change is the fence: every action of the implementation checks it first, so
    once a recovery took over, a run wrongly declared lost stops at its next action; and of two
    recoveries of the same lost run, only one wins.
    """
    result = session.execute(
        update(Change)
        .where(
            col(Change.id) == change_id,
            col(Change.flow_run_id) == lost_run_id,
            col(Change.status).in_(MID_IMPLEMENTATION + AWAITING_DECISIONS),
        )
        .values(flow_run_id=new_run_id, updated_at=clock.now())
    )
    return result.rowcount == 1


@dataclass(frozen=True)
class Interruption:
    """Where the latest implementation attempt stood, read from the change's timeline."""

    started_steps: list[str]
    """Implementation steps that started (finished or not), in the order they started."""
    in_flight: tuple[str, str] | None
    """(phase, name) of the action that started and never recorded a result, if any."""


def read_interruption(entries: list[ChangeEntry]) -> Interruption:
    """What a lost run had done: the entries since the latest `implementation_started`."""
    latest = max(
        (i for i, e in enumerate(entries) if e.kind == "implementation_started"), default=-1
    )
    started_steps: list[str] = []
    open_actions: dict[tuple[str, str], int] = {}
    for entry in entries[latest + 1 :]:
        phase, name = entry.data.get("phase"), entry.data.get("name")
        if not phase or not name:
            continue
        key = (phase, name)
        if entry.kind == f"{phase}_started":
            open_actions[key] = open_actions.get(key, 0) + 1
            if phase == "step" and name not in started_steps:
                started_steps.append(name)
        elif entry.kind in (f"{phase}_ok", f"{phase}_failed") and open_actions.get(key):
            open_actions[key] -= 1
    in_flight = next((key for key, count in reversed(open_actions.items()) if count), None)
    return Interruption(started_steps=started_steps, in_flight=in_flight)
