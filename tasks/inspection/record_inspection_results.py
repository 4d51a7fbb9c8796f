from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from prefect.runtime import flow_run

from itilflow.models import add_check_results, session_scope, start_inspection_run
from itilflow.runtime import runtime


@task(name="record-inspection-results", retries=2, retry_delay_seconds=1)
def record_inspection_results(
    group: str, started_at: datetime, results: list[dict[str, Any]]
) -> int:
    """Store the run and every result in one transaction; returns the run's id."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        run = start_inspection_run(
            session=session, group=group, flow_run_id=str(flow_run.get_id() or "") or None
        )
        run.started_at = started_at
        assert run.id is not None
        add_check_results(session=session, run_id=run.id, results=results)
        return run.id
