"""Due triggers are served by priority: a P1 is claimed before a flood of P4s due earlier, the
flood still drains, and P1 work has a lane of its own that a busy lane of its kind does not hold
back. Claims against the real database (SQLite, or PostgreSQL in the `postgres` set)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlmodel import Session, col, select

from itilflow import clock
from itilflow.dispatch.runner import BATCH_SIZE, URGENT_LANE, Batch, Runner, run_tags
from itilflow.models import (
    FlowTrigger,
    IncidentCreate,
    TimelineEntry,
    claim_due_triggers,
    session_scope,
)
from itilflow.services import incidents
from tests.flows.test_incident_flow import MONDAY_MORNING

# impact x urgency -> priority in policies/defaults/priority.yaml
P1 = {"impact": "high", "urgency": "high"}
P3 = {"impact": "medium", "urgency": "medium"}
P4 = {"impact": "low", "urgency": "medium"}


def open_many(rt, count: int, grade: dict[str, str], title: str = "flood") -> list[int]:
    """Opened as the alert intake opens them: one bulk insert, open triggers due now."""
    new = [
        IncidentCreate(title=f"{title} {n}", category="software", source="alert", **grade)
        for n in range(count)
    ]
    with session_scope(rt.engine) as session:
        return incidents.open_incidents(
            session=session,
            new=new,
            dedup_keys=[None] * count,
            policies=rt.policies,
            actor="test",
        )


def claim(rt, limit: int, **options) -> list[int]:
    with Session(rt.engine, expire_on_commit=False) as session:
        claimed = claim_due_triggers(
            session=session, limit=limit, lease=timedelta(minutes=1), runner="test", **options
        )
    return [trigger.incident_id for trigger in claimed]


def ranks(rt, incident_ids: list[int]) -> list[int]:
    with Session(rt.engine) as session:
        rows = session.exec(
            select(FlowTrigger.incident_id, FlowTrigger.priority_rank).where(
                col(FlowTrigger.incident_id).in_(incident_ids)
            )
        ).all()
    by_incident = dict(rows)
    return [by_incident[incident_id] for incident_id in incident_ids]


def test_open_triggers_are_ranked_at_intake_by_the_priority_matrix(rt):
    clock.freeze(MONDAY_MORNING)
    bulk = open_many(rt, 1, P1) + open_many(rt, 1, P3) + open_many(rt, 1, P4)
    with session_scope(rt.engine) as session:
        given, _ = incidents.open_incident(
            session=session,
            new=IncidentCreate(title="given", priority="P2", **P4),
            policies=rt.policies,
            actor="test",
        )
        unranked, _ = incidents.open_incident(
            session=session, new=IncidentCreate(title="defaults"), policies=rt.policies, actor="t"
        )
        ids = [given.id, unranked.id]
    assert ranks(rt, bulk) == [1, 3, 4]
    assert ranks(rt, ids) == [2, 3], "a given priority wins; defaults rank as they classify"


def test_a_p1_due_later_is_claimed_before_a_flood_of_p4s_due_earlier(rt):
    clock.freeze(MONDAY_MORNING)
    flood = open_many(rt, 60, P4)
    clock.advance(timedelta(seconds=30))
    (p1,) = open_many(rt, 1, P1, title="payments down")
    claimed = claim(rt, 10)
    assert claimed[0] == p1, "the P1 first, though the whole flood was due before it"
    assert claimed[1:] == flood[:9], "then the flood, in the order it came"
    assert claim(rt, 10, max_rank=2) == [], "the urgent lane takes no P4"


def test_old_low_rank_work_keeps_a_share_of_every_claim(rt):
    clock.freeze(MONDAY_MORNING)
    flood = open_many(rt, 30, P4)
    drained: list[int] = []
    storm: list[int] = []
    for _ in range(6):
        # More urgent work arrives than a claim takes: without a share the P4s would starve.
        clock.advance(timedelta(seconds=5))
        storm += open_many(rt, 40, P1, title="storm")
        claimed = claim(rt, 20)
        taken = [incident_id for incident_id in claimed if incident_id in flood]
        assert len(taken) == 5, "a quarter of each claim goes to the work due longest"
        assert set(claimed) - set(taken) <= set(storm), "the rest by rank"
        drained += taken
    assert drained == flood, "the flood drained, in the order it came"


def test_a_p1_takes_the_urgent_lane_while_its_kinds_lane_runs_a_batch(rt):
    clock.freeze(MONDAY_MORNING)
    runner = Runner(rt.engine, name="test:runner")
    open_many(rt, 150, P3)
    batches, claimed = runner._claim(100)
    assert [(b.lane, len(b.triggers)) for b in batches] == [("open", 100)] and claimed == 100
    runner._busy = {"open": 1}  # that batch runs

    clock.advance(timedelta(seconds=1))
    (p1,) = open_many(rt, 1, P1, title="payments down")
    batches, claimed = runner._claim(100)
    assert [(b.lane, b.flow, [t.incident_id for t in b.triggers]) for b in batches] == [
        (URGENT_LANE, "open", [p1])
    ]
    assert claimed == 0, "the P3s wait for their lane"

    runner._busy = {"open": 1, URGENT_LANE: 1}
    clock.advance(timedelta(seconds=1))
    open_many(rt, 1, P1, title="second outage")
    assert runner._claim(100) == ([], 0), "one batch a lane, the urgent one too"


def first_notified(rt, incident_ids: list[int]) -> dict[int, int]:
    """incident -> the id of its first `notified` timeline entry (ids grow as entries are
    written, whatever the frozen clock says)."""
    with Session(rt.engine) as session:
        rows = session.exec(
            select(TimelineEntry.incident_id, TimelineEntry.id)
            .where(col(TimelineEntry.incident_id).in_(incident_ids))
            .where(TimelineEntry.kind == "notified")
            .order_by(col(TimelineEntry.id))
        ).all()
    first: dict[int, int] = {}
    for incident_id, entry_id in rows:
        first.setdefault(incident_id, entry_id)
    return first


@pytest.mark.usefixtures("prefect_server")
async def test_a_p1_opened_while_a_flood_runs_is_notified_before_the_flood_drains(
    rt, smtp_server, http_sink
):
    clock.freeze(MONDAY_MORNING)
    flood = open_many(rt, 120, P3)
    runner = Runner(rt.engine, poll_seconds=0.05, batch_size=30)
    running = asyncio.create_task(runner.run_until_idle(timeout=300))
    while "open" not in runner._busy:  # the flood's first batch runs
        await asyncio.sleep(0.01)
    (p1,) = await asyncio.to_thread(open_many, rt, 1, P1, "payments down")
    await running
    assert runner.failed == 0

    notified = first_notified(rt, [*flood, p1])
    assert set(notified) == {*flood, p1}, "every incident of the flood notified, and the P1"
    flood_order = sorted(notified[incident_id] for incident_id in flood)
    # Before the flood drained (the old order served it last, due last): not a tighter bound,
    # since the P1's run and the flood's compete for the test's SQLite Prefect server, whose
    # "busy" answers cost a run a 2-8 s back-off.
    assert notified[p1] < flood_order[-1], "the P1 went out before the flood drained"
    with Session(rt.engine) as session:
        runs = dict(
            session.exec(
                select(FlowTrigger.incident_id, FlowTrigger.flow_run_id).where(
                    FlowTrigger.key == "open"
                )
            ).all()
        )
    assert runs[p1] not in {runs[incident_id] for incident_id in flood}, "a run of its own"


def test_a_full_batch_names_fewer_records_than_the_prefect_server_takes():
    # Prefect 3.8.8 answers 500 to a flow run whose event has 100 related resources or more.
    triggers = [
        FlowTrigger(id=n, incident_id=n, kind="open", key="open", due_at=MONDAY_MORNING)
        for n in range(1, BATCH_SIZE + 1)
    ]
    assert len(run_tags(Batch("open", triggers))) <= 90
