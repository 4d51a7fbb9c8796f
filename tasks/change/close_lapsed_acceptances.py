"""Changes whose acceptance window lapsed without an answer close as accepted by lapse."""

from __future__ import annotations

from prefect import task

from itilflow import clock
from itilflow.models import session_scope
from itilflow.runtime import runtime
from itilflow.services.changes import acceptance


@task(name="close-lapsed-acceptances")
def close_lapsed_acceptances() -> list[int]:
    """Close each change awaiting sign-off past its window (no run waits with it: the
    `remind-approvers` sweep is its timer, so it closes within one sweep of the window's end).
    The ids closed."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        lapsed = acceptance.lapsed_acceptances(session, clock.now())
        for change in lapsed:
            acceptance.accept_by_lapse(session, change)
        return [change.id for change in lapsed if change.id is not None]
