"""Every timeline entry is also a Prefect event of its record, so that the Prefect UI's event feed
follows one incident: resource `itilflow.incident.INC-...`, named after the entry's kind, the
flow run that wrote it as a related resource. On the Prefect test server, through the runner."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from prefect import get_client
from prefect.events.filters import EventFilter, EventOccurredFilter, EventResourceFilter
from sqlmodel import Session, select

from itilflow.dispatch.events import prefect_event
from itilflow.models import (
    FlowTrigger,
    Problem,
    TimelineEvent,
    add_problem_entry,
    get_timeline,
    pending_events,
    session_scope,
)
from itilflow.models.timeline_events import outbox_row
from tests.flows.test_batches import run
from tests.flows.test_incident_flow import open_incident

pytestmark = pytest.mark.usefixtures("prefect_server")


async def events_of(resource: str, since: datetime, expected: int) -> list:
    """The server's events of `resource` since `since`, once `expected` of them were stored
    (the server's persister writes them every few seconds), or what is there after 30 s."""
    wanted = EventFilter(
        occurred=EventOccurredFilter(since=since, until=datetime.now(UTC) + timedelta(hours=1)),
        resource=EventResourceFilter(id=[resource]),
    )
    async with get_client() as client:
        for _ in range(60):
            page = await client.read_events(filter=wanted, limit=50)
            if len(page.events) >= expected:
                break
            await asyncio.sleep(0.5)
    return page.events


def outbox(rt) -> list[TimelineEvent]:
    with Session(rt.engine) as session:
        return pending_events(session=session, limit=1000)


async def test_each_entry_of_an_incident_is_one_event_of_the_incident(client, rt, smtp_server):
    # Real time, not a frozen Monday: the server keeps and filters events by when they occurred.
    since = datetime.now(UTC) - timedelta(seconds=1)
    incident = open_incident(client, title="disk full on db-7")
    [opened] = outbox(rt)
    assert opened.flow_run_id is None, "the gateway writes outside any run"

    await run(rt)

    assert outbox(rt) == [], "the runner sent everything and forgot what the server accepted"
    with Session(rt.engine) as session:
        timeline = get_timeline(session=session, incident_id=incident["id"])
        [open_run] = session.exec(
            select(FlowTrigger.flow_run_id).where(
                FlowTrigger.incident_id == incident["id"], FlowTrigger.kind == "open"
            )
        ).all()
    resource = f"itilflow.incident.{incident['number']}"
    events = await events_of(resource, since, expected=len(timeline))
    assert len(timeline) >= 4
    assert sorted(event.event for event in events) == sorted(
        f"itilflow.incident.{entry.kind}" for entry in timeline
    ), "one event per entry, none twice"
    by_kind = {event.payload["kind"]: event for event in events}
    first = by_kind["opened"]
    assert first.resource.id == resource and first.resource.name == incident["number"]
    assert first.payload["actor"] == "admin" and first.payload["data"]["source"]
    assert first.related == []
    written_by_the_run = [event for event in events if event.payload["kind"] != "opened"]
    for event in written_by_the_run:
        [related] = event.related
        assert related.id == f"prefect.flow-run.{open_run}" and related.role == "flow-run"
    assert "itilflow.incident.notified" in {event.event for event in events}


def test_entries_of_problems_and_changes_are_events_of_their_record(rt):
    with session_scope(rt.engine) as session:
        problem = Problem(title="disk fills up", match_kind="ci", match_value="db-7")
        session.add(problem)
        session.flush()
        add_problem_entry(session=session, problem_id=problem.id, kind="opened", actor="flow:x")
    [row] = outbox(rt)
    assert (row.event, row.resource) == ("itilflow.problem.opened", "itilflow.problem.PRB-000001")
    assert row.payload == {"kind": "opened", "actor": "flow:x", "message": "", "data": {}}
    change = outbox_row("change", 3, {"kind": "approved", "actor": "ann"}, "0f1e")
    assert (change["event"], change["resource"]) == (
        "itilflow.change.approved",
        "itilflow.change.CHG-000003",
    )
    assert prefect_event(TimelineEvent(id=2, **change))["related"] == [
        {"prefect.resource.id": "prefect.flow-run.0f1e", "prefect.resource.role": "flow-run"}
    ]
