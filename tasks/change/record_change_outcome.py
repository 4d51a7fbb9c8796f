"""The implementation's outcome is written to the change and its timeline."""

from __future__ import annotations

from typing import Any

from prefect import task

from itilflow import clock
from itilflow.models import (
    Change,
    ChangeStatus,
    add_change_entry,
    session_scope,
)
from itilflow.runtime import runtime
from itilflow.services import changes
from itilflow.services.changes import acceptance


@task(name="record-change-outcome")
def record_change_outcome(
    change_id: int, outcome: dict[str, Any], lost_run_id: str | None = None
) -> str:
    """Set the final status and write the post-implementation review that closes the change;
    after a recovery (`lost_run_id`), say so in the same transaction."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        change.status = ChangeStatus(outcome["outcome"])
        change.updated_at = clock.now()
        failure = outcome.get("failure")
        change.review = {
            "outcome": outcome["outcome"],
            "reviewed_at": clock.now().isoformat(),
            "actions": [
                {
                    "phase": e["phase"],
                    "name": e["name"],
                    "ok": e["result"]["ok"],
                    "summary": e["result"]["summary"],
                    "seconds": round(e["result"]["duration_seconds"], 3),
                }
                for e in outcome["events"]
            ],
            "failure": (
                {
                    "phase": failure["phase"],
                    "name": failure["name"],
                    "summary": failure["result"]["summary"],
                }
                if failure
                else None
            ),
            "not_rolled_back": outcome.get("not_rolled_back", []),
        }
        session.add(change)
        add_change_entry(
            session=session,
            change_id=change_id,
            kind="reviewed",
            actor="flow:implement-change",
            message=summary_of(change),
            data=change.review,
        )
        if lost_run_id:
            add_change_entry(
                session=session,
                change_id=change_id,
                kind="recovered",
                actor="flow:recover-change",
                message=f"{change.number} {change.status.value.replace('_', ' ')} after its "
                f"run {lost_run_id} was lost mid-implementation",
                data={"lost_run_id": lost_run_id, "outcome": change.status.value},
            )
        if _to_be_accepted(session, change, rt.policies.change.acceptance.required):
            acceptance.ask_for_acceptance(session=session, change=change, policies=rt.policies)
        return change.status.value


def _to_be_accepted(session: Any, change: Change, required: bool) -> bool:
    """A verified change waits for its requester when the policy asks for it and a code can
    reach them (else nobody could accept it, and the window would only delay the close)."""
    if not required or change.status != ChangeStatus.successful:
        return False
    if acceptance.code_address(session, change) is None:
        add_change_entry(
            session=session,
            change_id=change.id or 0,
            kind="acceptance_skipped",
            actor="flow:implement-change",
            message=f"no acceptance asked: {change.requester} has no address on record",
        )
        return False
    return True


def summary_of(change: Change) -> str:
    review = change.review or {}
    failure = review.get("failure")
    text = f"{change.number} {change.status.value.replace('_', ' ')}"
    if failure:
        text += f": {failure['phase']} {failure['name']} failed ({failure['summary']})"
    if review.get("not_rolled_back"):
        text += f"; still applied: {', '.join(review['not_rolled_back'])}"
    return text
