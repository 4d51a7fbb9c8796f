from __future__ import annotations

from prefect import task

from itilflow.models import session_scope
from itilflow.runtime import runtime
from itilflow.services import problems


@task(name="open-or-update-problems", retries=2, retry_delay_seconds=2)
def open_or_update_problems(clusters: list[problems.Cluster]) -> list[problems.ProblemEvent]:
    """A problem per cluster, with its owner; a cluster whose problem is not closed yet only
    links its new incidents (and reopens a fixed problem they recurred on)."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        return problems.open_or_update_problems(session, clusters, policies=rt.policies)
