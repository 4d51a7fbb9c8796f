"""Recovery of a change whose run was lost: who takes it over, and where the lost run stopped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

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


# A change's run sends a heartbeat every 30 s on the stack's workers (itilflow/stack.py); none
# for this long means its process or host is gone (prefect.yaml's trigger waits as long).
HEARTBEAT_TIMEOUT = timedelta(seconds=45)
# Prefect state types of a run that may still be working on its change.
UNFINISHED_STATES = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING")


@dataclass(frozen=True)
class RunSeen:
    """What the Prefect server says of a change's run: its state type ("RUNNING", "CRASHED"...)
    and the latest sign of life (heartbeat, state change or start), None when it has none."""

    state_type: str
    last_seen: datetime | None


def why_lost(
    status: ChangeStatus,
    run: RunSeen | None,
    now: datetime,
    timeout: timedelta = HEARTBEAT_TIMEOUT,
) -> str | None:
    """Why the run of a change in `status` counts as lost, None when it does not.

    Only a change mid-implementation can be lost this way (a waiting one has its own net). Its
    run is lost when the server has no such run, when the run ended while the change still
    says implementing (the run never closed it), or when an unfinished run gave no sign of
    life for `timeout`: after a power cut the server shows it Running for good."""
    if status not in MID_IMPLEMENTATION:
        return None
    if run is None:
        return "its run is gone from the Prefect server"
    if run.state_type not in UNFINISHED_STATES:
        return f"its run ended ({run.state_type.lower()}) without closing it"
    if run.last_seen is None:
        return "its run never sent a heartbeat"
    silent = now - run.last_seen
    if silent > timeout:
        return f"no heartbeat from its run for {int(silent.total_seconds())} s"
    return None
