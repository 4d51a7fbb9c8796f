from __future__ import annotations

from dataclasses import replace

from prefect import task
from prefect.cache_policies import NO_CACHE

from itilflow.models import Change, parse_change_ref, session_scope
from itilflow.runtime import runtime
from itilflow.services import changes


# Never from a cache: a replayed decision (same code, same change) is judged again, and refused.
@task(name="record-approval-input", cache_policy=NO_CACHE)
def record_approval_input(
    change: str, decision: str, code: str, comment: str
) -> changes.EngineDecision:
    """A decision from the Prefect UI's `decide-change` form (or the API behind it), with the
    approver's emailed one-time code. Without one it decides nothing and is recorded as refused:
    Prefect has no users, so a run's parameters alone say nothing about who sent them."""
    try:
        change_id = parse_change_ref(change)
    except ValueError as exc:
        return changes.EngineDecision("nothing", str(exc))
    rt = runtime()
    with session_scope(rt.engine) as session:
        if session.get(Change, change_id) is None:
            return changes.EngineDecision("nothing", f"no change {change!r}")
        stored = changes.load_change(session, change_id)
        taken = changes.decide_from_engine(
            session=session,
            change=stored,
            version=stored.version,
            decision=decision,
            code=code,
            comment=comment,
            secret=rt.secret,
            policies=rt.policies,
        )
        return replace(taken, change_id=change_id)
