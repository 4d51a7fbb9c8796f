"""Is the change's window open, still to come, or past?"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from prefect import task
from pydantic import BaseModel

from itilflow import clock
from itilflow.models import add_change_entry, session_scope
from itilflow.policies import ChangePolicy, NoAllowedStart, next_allowed_start
from itilflow.runtime import runtime
from itilflow.services import changes


class Window(BaseModel):
    """now: implement at once; later: at `at` (the planned start, or for a change without one
    the next maintenance window outside the freezes; ISO 8601); missed: the window has passed
    (or the policy leaves none)."""

    when: Literal["now", "later", "missed"]
    at: str | None = None


@task(name="check-window")
def check_window(change_id: int, version: int) -> Window:
    """now: implement at once; later: at planned_start, or without one at the next allowed
    start; missed: the window has passed."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        now = clock.now()
        if change.planned_start is None:
            return _next_allowed(session, rt.policies.change, change, now)
        if change.planned_end and change.planned_end <= now:
            changes.expire_change(
                session=session,
                change=change,
                actor="flow:change",
                note="approved after its window closed; plan a new window",
            )
            return Window(when="missed")
        if change.planned_start and change.planned_start > now:
            return Window(when="later", at=change.planned_start.isoformat())
        return Window(when="now")


def _next_allowed(session: Any, policy: ChangePolicy, change: Any, now: datetime) -> Window:
    """A change without a planned start obeys the windows and freezes as one with it does: it
    waits for the next maintenance window outside the freezes (an emergency runs at once)."""
    try:
        at = next_allowed_start(policy, now, category=change.category)
    except NoAllowedStart as exc:
        changes.expire_change(session=session, change=change, actor="flow:change", note=str(exc))
        return Window(when="missed")
    if at <= now:
        return Window(when="now")
    add_change_entry(
        session=session,
        change_id=change.id,
        kind="window_chosen",
        actor="flow:change",
        message="no planned start: waits for the next maintenance window outside the change "
        f"freezes, {at.astimezone(policy.zone).strftime('%Y-%m-%d %H:%M %Z')}",
        data={"at": at.isoformat()},
    )
    return Window(when="later", at=at.isoformat())
