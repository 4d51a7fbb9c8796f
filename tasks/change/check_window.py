"""Is the change's window open, still to come, or past?"""

from __future__ import annotations

from typing import Literal

from prefect import task
from pydantic import BaseModel

from itilflow import clock
from itilflow.models import session_scope
from itilflow.runtime import runtime
from itilflow.services import changes


class Window(BaseModel):
    """now: implement at once; later: at `at` (the planned start, ISO 8601); missed: the window
    has passed."""

    when: Literal["now", "later", "missed"]
    at: str | None = None


@task(name="check-window")
def check_window(change_id: int, version: int) -> Window:
    """now: implement at once; later: at planned_start; missed: the window has passed."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        now = clock.now()
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
