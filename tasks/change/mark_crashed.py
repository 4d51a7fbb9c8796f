"""The run died during implementation: the change says what may be applied."""

from __future__ import annotations

from itilflow.models import (
    Change,
    ChangeStatus,
    add_change_entry,
    get_change_timeline,
    session_scope,
)
from itilflow.runtime import runtime


def mark_crashed(change_id: int, reason: str) -> None:
    """The run died: say what may be applied, so nobody takes the change for untouched."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = session.get(Change, change_id)
        if change is None or change.status != ChangeStatus.implementing:
            return
        started = [
            e.data.get("name")
            for e in get_change_timeline(session=session, change_id=change_id)
            if e.kind == "step_started"
        ]
        change.status = ChangeStatus.crashed
        session.add(change)
        add_change_entry(
            session=session,
            change_id=change_id,
            kind="crashed",
            actor="flow:implement-change",
            message=f"the run died during implementation ({reason}); steps possibly applied: "
            f"{', '.join(started) or 'none'}; check the system before anything else",
            data={"possibly_applied": started},
        )
