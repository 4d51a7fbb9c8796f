from __future__ import annotations

from prefect import task

from itilflow import clock
from itilflow.models import session_scope
from itilflow.runtime import runtime
from itilflow.services import problems


@task(name="close-quiet-problems", retries=2, retry_delay_seconds=2)
def close_quiet_problems() -> list[problems.ProblemEvent]:
    """Resolve problems whose fixing change succeeded; close fixed problems that stayed quiet
    for problem.yaml's quiet_period; reopen those that recurred."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        return problems.review_fixes(session, policies=rt.policies, now=clock.now())
