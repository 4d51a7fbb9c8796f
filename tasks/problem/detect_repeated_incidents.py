from __future__ import annotations

from prefect import task

from itilflow import clock
from itilflow.models import session_scope
from itilflow.runtime import runtime
from itilflow.services import problems


@task(name="detect-repeated-incidents", retries=1, retry_delay_seconds=5)
def detect_repeated_incidents() -> list[problems.Cluster]:
    """Incidents sharing a configuration item, category or alert fingerprint, at least the
    policy's number within its window (problem.yaml: detect)."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        return problems.detect_clusters(session, rt.policies.problem, clock.now())
