"""Due work runs in batches: one flow run for a burst, a failing item alone, notifications kept
until delivered. On a real Prefect server, SMTP server and chat sink."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from itilflow import clock
from itilflow.dispatch.runner import ALONE_AFTER_ATTEMPTS, ENGINE_ERROR, LEASE, Runner, make_batches
from itilflow.models import FlowTrigger, add_trigger, get_timeline, session_scope
from tests.flows.test_incident_flow import MONDAY_MORNING, kinds, open_incident

pytestmark = pytest.mark.usefixtures("prefect_server")


def triggers_of(rt, key: str) -> list[FlowTrigger]:
    with Session(rt.engine) as session:
        return list(session.exec(select(FlowTrigger).where(FlowTrigger.key == key)))


async def run(rt) -> Runner:
    runner = Runner(rt.engine, concurrency=2, poll_seconds=0.05)
    await runner.run_until_idle(timeout=120)
    return runner


def claimed_by(runner: Runner) -> list[FlowTrigger]:
    batches, _ = runner._claim(10)
    return [trigger for batch in batches for trigger in batch.triggers]


def make_trigger(kind: str, attempts: int = 1, last_error: str | None = None) -> FlowTrigger:
    return FlowTrigger(
        id=attempts,
        incident_id=1,
        kind=kind,
        key=kind,
        due_at=datetime(2026, 11, 23, tzinfo=UTC),
        attempts=attempts,
        last_error=last_error,
    )


def test_triggers_are_batched_by_flow_and_one_that_keeps_failing_runs_alone():
    triggers = [
        make_trigger("open"),
        make_trigger("open"),
        make_trigger("escalation"),
        make_trigger("response_due"),
        make_trigger("resolved"),
        make_trigger("progress", attempts=ALONE_AFTER_ATTEMPTS, last_error="KeyError: 'x'"),
        # The engine being down is no fault of the trigger's: it stays in its batch.
        make_trigger("escalation", attempts=5, last_error=f"{ENGINE_ERROR}ConnectError"),
    ]
    batches = [(batch.flow, len(batch.triggers)) for batch in make_batches(triggers)]
    assert batches == [("open", 2), ("timers", 3), ("resolved", 1), ("timers", 1)]


async def test_a_burst_of_incidents_is_one_flow_run_and_each_is_notified_once(
    client, rt, smtp_server, http_sink
):
    clock.freeze(MONDAY_MORNING)
    refs = [open_incident(client, title=f"disk full on db-{n}") for n in range(12)]
    runner = await run(rt)
    assert runner.failed == 0

    opened = triggers_of(rt, "open")
    assert len(opened) == 12 and all(t.done_at for t in opened)
    assert len({t.flow_run_id for t in opened}) == 1, "one flow run for the whole burst"
    mails = smtp_server.wait_for(12)
    chats = http_sink.wait_for(12)
    for ref in refs:
        assert sum(ref["number"] in mail.message["Subject"] for mail in mails) == 1
        assert sum(ref["number"] in chat.json["title"] for chat in chats) == 1
        assert kinds(rt, ref["id"])[:6] == [
            "opened",
            "classified",
            "assigned",
            "notified",
            "notified",
            "sla_started",
        ]


async def test_a_notification_that_failed_is_delivered_once_when_its_channel_returns(
    client, rt, smtp_server, http_sink
):
    clock.freeze(MONDAY_MORNING)
    rt.settings.notify_retry_delays = [0.1]
    smtp_server.stop()
    http_sink.status = 500
    ref = open_incident(client)
    await run(rt)
    assert {"notification_failed"} <= set(kinds(rt, ref["id"]))
    kept = triggers_of(rt, "notify:opened")
    assert len(kept) == 1 and kept[0].pending
    assert kept[0].due_at == MONDAY_MORNING + timedelta(seconds=15)

    # Still down when it comes due: the run fails and is tried again with back-off.
    clock.advance(timedelta(seconds=16))
    await run(rt)
    assert triggers_of(rt, "notify:opened")[0].pending

    smtp_server.start()
    http_sink.clear()  # the sink keeps the requests it refused too
    http_sink.status = 200
    clock.advance(timedelta(minutes=1))
    await run(rt)
    assert not triggers_of(rt, "notify:opened")[0].pending
    assert len(smtp_server.wait_for(1)) == 1
    assert len(http_sink.wait_for(1)) == 1
    with Session(rt.engine) as session:
        delivered = [
            entry.data["channel"]
            for entry in get_timeline(session=session, incident_id=ref["id"])
            if entry.kind == "notified"
        ]
    assert sorted(delivered) == ["chat", "email"]

    clock.advance(timedelta(minutes=2))
    await run(rt)
    assert len(smtp_server.mails) == 1 and len(http_sink.requests) == 1, "delivered once"


async def test_a_timer_that_keeps_failing_does_not_hold_back_the_others(
    client, rt, smtp_server, http_sink
):
    clock.freeze(MONDAY_MORNING)
    good, bad = open_incident(client), open_incident(client, title="second")
    await run(rt)
    with session_scope(rt.engine) as session:
        for ref, kind in ((good, "progress"), (bad, "no-such-timer")):
            add_trigger(
                session=session,
                incident_id=ref["id"],
                kind=kind,
                key=f"test:{kind}",
                due_at=clock.now(),
                data={"sequence": 1},
            )
    for _ in range(ALONE_AFTER_ATTEMPTS):
        await run(rt)
        clock.advance(timedelta(seconds=10))  # past each back-off
    assert not triggers_of(rt, "test:progress")[0].pending
    assert "progress_reminder" in kinds(rt, good["id"])
    failing = triggers_of(rt, "test:no-such-timer")[0]
    assert failing.pending and failing.attempts >= ALONE_AFTER_ATTEMPTS
    assert "flow_failed" in kinds(rt, bad["id"])


async def test_a_running_batch_keeps_its_claims_and_a_dead_runners_lapse(client, rt):
    clock.freeze(MONDAY_MORNING)
    open_incident(client)
    alive = Runner(rt.engine, name="host-a:runner")
    (claimed,) = claimed_by(alive)
    alive._held = {claimed.id}
    dead = Runner(rt.engine, name="host-b:runner")
    assert claimed_by(dead) == [], "claimed rows are not taken twice"

    clock.advance(LEASE - timedelta(seconds=1))
    alive._renew()
    clock.advance(timedelta(seconds=2))
    assert claimed_by(dead) == [], "a live runner's lease was renewed"

    clock.advance(LEASE)  # host-a stopped renewing: it died
    (taken_over,) = claimed_by(dead)
    assert taken_over.id == claimed.id and taken_over.claimed_by == "host-b:runner"
