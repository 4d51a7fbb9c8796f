"""A batch's run handles many incidents, and each incident's runs can still be found: every run
carries a tag per record it handles ("incident:INC-000041"), which the Prefect UI filters on, and
each trigger keeps the id of the run that handled it. On the Prefect test server."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterStartTime,
    FlowRunFilterTags,
)
from sqlmodel import Session, select

from itilflow import clock
from itilflow.models import FlowTrigger
from tests.flows.test_batches import run
from tests.flows.test_incident_flow import MONDAY_MORNING, open_incident

pytestmark = pytest.mark.usefixtures("prefect_server")


async def runs_tagged(tag: str, since: datetime) -> list[tuple[str, str]]:
    """(flow run id, flow run name) of every run with the tag that started `since` (the test
    server is shared by the session's tests, whose databases all number from 1)."""
    wanted = FlowRunFilter(
        tags=FlowRunFilterTags(all_=[tag]), start_time=FlowRunFilterStartTime(after_=since)
    )
    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=wanted)
    return sorted((str(r.id), r.name) for r in runs)


async def task_run_tags(flow_run_id: str) -> list[list[str]]:
    async with get_client() as client:
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)]))
        )
    return [list(task_run.tags) for task_run in task_runs]


def run_ids_of(rt, incident_id: int) -> set[str | None]:
    """The runs that handled the incident's triggers (its SLA timers have not come due)."""
    with Session(rt.engine) as session:
        query = select(FlowTrigger.flow_run_id).where(
            FlowTrigger.incident_id == incident_id,
            FlowTrigger.done_at.is_not(None),  # type: ignore[union-attr]
        )
        return set(session.exec(query))


async def test_every_run_that_handled_an_incident_is_found_by_its_tag(client, rt, smtp_server):
    since = datetime.now(UTC)
    clock.freeze(MONDAY_MORNING)
    first, second, third = (open_incident(client, title=f"disk full on db-{n}") for n in range(3))
    await run(rt)
    resolved = client.post(f"/api/incidents/{second['number']}/resolve", json={"note": "freed"})
    assert resolved.status_code == 200, resolved.text
    await run(rt)

    [opened] = await runs_tagged(f"incident:{first['number']}", since)
    assert opened[1] == f"open {first['number']} +2", "one run for the burst"
    assert await runs_tagged(f"incident:{third['number']}", since) == [opened]
    of_second = await runs_tagged(f"incident:{second['number']}", since)
    assert len(of_second) == 2 and opened in of_second
    [(resolved_run, name)] = [run for run in of_second if run != opened]
    assert name == f"resolved {second['number']}"
    assert run_ids_of(rt, second["id"]) == {opened[0], resolved_run}
    assert run_ids_of(rt, first["id"]) == {opened[0]}
    # The steps go untagged: a tagged task run costs a round trip for a concurrency slot.
    steps = await task_run_tags(opened[0])
    assert len(steps) >= 5 and all(tags == [] for tags in steps), steps
