from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from itilflow.models import session_scope
from itilflow.runtime import runtime
from itilflow.services import changes


# Never from a cache: a replayed resume (same code, same run) is judged again, and refused.
@task(name="record-approval-input", cache_policy=NO_CACHE)
def record_approval_input(
    change_id: int, version: int, decision: str, code: str, comment: str, flow_run_id: str
) -> changes.EngineDecision:
    """A resume of the paused run: from the Prefect UI's form or API with the approver's emailed
    one-time code, or from the gateway with its signed receipt of a link's decision (already
    stored: then nothing more to do). Without either it decides nothing and is recorded as
    refused: Prefect has no users, so a resume alone says nothing about who sent it."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        return changes.decide_from_engine(
            session=session,
            change=changes.load_change(session, change_id),
            version=version,
            decision=decision,
            code=code,
            comment=comment,
            flow_run_id=flow_run_id,
            secret=rt.secret,
            policies=rt.policies,
        )
