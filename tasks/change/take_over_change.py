"""A recovery takes over the change of a lost run."""

from __future__ import annotations

from typing import Any, Literal

from prefect import task
from prefect.runtime import flow_run
from pydantic import BaseModel, Field
from sqlmodel import select

from itilflow.models import (
    Change,
    add_change_entry,
    get_change_timeline,
    session_scope,
)
from itilflow.runtime import runtime
from itilflow.services import changes


class Takeover(BaseModel):
    """What the recovery does with the lost run's change: "none" (and `why`), "restart" a change
    that was waiting for decisions (its process starts again and finds them), or "roll_back"
    one that was being implemented, with its plan, the steps the lost run had started and the
    action it was in when lost."""

    action: Literal["none", "restart", "roll_back"]
    why: str = ""
    change_id: int | None = None
    plan: dict[str, Any] | None = None
    started_steps: list[str] = Field(default_factory=list)
    in_flight: tuple[str, str] | None = None
    lost_run_id: str | None = None


@task(name="take-over-change")
def take_over_change(lost_run_id: str, reason: str) -> Takeover:
    """Decide what the lost run's change needs, and claim it for this run if anything."""
    rt = runtime()
    this_run = str(flow_run.get_id() or "") or None
    with session_scope(rt.engine) as session:
        change = session.exec(select(Change).where(Change.flow_run_id == lost_run_id)).first()
        if change is None or change.id is None:
            return Takeover(action="none", why="no change belongs to this run any more")
        change_id = change.id
        status = change.status
        if status in changes.AWAITING_DECISIONS:
            if not changes.take_over_change(
                session=session, change_id=change_id, lost_run_id=lost_run_id, new_run_id=None
            ):
                return Takeover(action="none", why="another run took the change over")
            add_change_entry(
                session=session,
                change_id=change_id,
                kind="process_restarted",
                actor="flow:recover-change",
                message=f"the change's run {lost_run_id} was lost ({reason}) while waiting for "
                "decisions: starting it again; decisions already given count",
                data={"lost_run_id": lost_run_id},
            )
            return Takeover(action="restart", change_id=change_id)
        if status not in changes.MID_IMPLEMENTATION:
            return Takeover(action="none", why=f"{change.number} is {status.value}")
        if not changes.take_over_change(
            session=session, change_id=change_id, lost_run_id=lost_run_id, new_run_id=this_run
        ):
            return Takeover(action="none", why="another run took the change over")
        where = changes.read_interruption(get_change_timeline(session=session, change_id=change_id))
        during = f"{where.in_flight[0]} {where.in_flight[1]!r}" if where.in_flight else "a step"
        undo = list(reversed(where.started_steps))
        add_change_entry(
            session=session,
            change_id=change_id,
            kind="recovery_started",
            actor="flow:recover-change",
            message=f"the run {lost_run_id} was lost ({reason}) during {during}: rolling back "
            f"the steps it started, latest first: {', '.join(undo) or 'none'}",
            data={
                "lost_run_id": lost_run_id,
                "decision": "roll_back",
                "started_steps": where.started_steps,
                "in_flight": list(where.in_flight) if where.in_flight else None,
            },
        )
        return Takeover(
            action="roll_back",
            change_id=change_id,
            plan=change.plan,
            started_steps=where.started_steps,
            in_flight=where.in_flight,
            lost_run_id=lost_run_id,
        )
