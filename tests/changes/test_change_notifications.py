"""A change's outcome goes through the incidents' delivery pipeline: a mail or chat message that
fails through the engine's retries is on the change's timeline, kept, and delivered once by the
runner when its channel is back; the change's run is not failed by it. On the Prefect test
server, the real SMTP server (stopped, then started again) and the chat sink."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from itilflow import clock
from itilflow.flows.change import manage_change
from itilflow.models import FlowTrigger, change_number, get_change_timeline, session_scope
from itilflow.services.changes.requests import NewChange, submit_change
from tests.flows.test_batches import run
from tests.flows.test_runs_per_incident import runs_tagged

pytestmark = pytest.mark.usefixtures("prefect_server")

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
# In the default policy's Spring Festival freeze: a normal change there is refused at once.
IN_THE_FREEZE = datetime(2027, 2, 10, 2, tzinfo=UTC)
PLAN = {
    "steps": [{"name": "noop", "do": {"kind": "shell", "command": "true"}, "irreversible": True}]
}


def kept(rt, change_id: int) -> list[FlowTrigger]:
    with Session(rt.engine) as session:
        return list(session.exec(select(FlowTrigger).where(FlowTrigger.change_id == change_id)))


def timeline_kinds(rt, change_id: int) -> list[str]:
    with Session(rt.engine) as session:
        return [e.kind for e in get_change_timeline(session=session, change_id=change_id)]


async def test_an_outcome_that_failed_is_kept_and_delivered_once_when_mail_is_back(
    rt, smtp_server, http_sink
):
    since = datetime.now(UTC)
    clock.freeze(NOW)
    rt.settings.notify_retry_delays = [0.1]
    with session_scope(rt.engine) as session:
        change = submit_change(
            session=session,
            new=NewChange(
                title="Rotate the TLS certificate",
                plan=PLAN,
                planned_start=IN_THE_FREEZE,
                planned_end=IN_THE_FREEZE + timedelta(hours=1),
                requester_email="owner@example.com",
            ),
            actor="test",
        )
        change_id = change.id
    assert change_id is not None
    smtp_server.stop()
    http_sink.status = 500

    assert await manage_change(change_id) == "refused"  # the run goes on without the mail

    assert "notification_failed" in timeline_kinds(rt, change_id)
    [trigger] = kept(rt, change_id)
    assert trigger.pending and trigger.kind == "notify" and trigger.incident_id is None
    assert trigger.due_at == NOW + timedelta(seconds=15)

    # Still down when it comes due: the run fails and is tried again with back-off.
    clock.advance(timedelta(seconds=16))
    await run(rt)
    assert kept(rt, change_id)[0].pending
    assert "flow_failed" in timeline_kinds(rt, change_id)

    smtp_server.start()
    http_sink.clear()  # the sink keeps the requests it refused too
    http_sink.status = 200
    clock.advance(timedelta(minutes=1))
    await run(rt)
    assert not kept(rt, change_id)[0].pending
    [mail] = smtp_server.wait_for(1)
    assert list(mail.rcpt_tos) == ["owner@example.com"]
    assert "CHG-" in mail.message["Subject"]
    assert len(http_sink.wait_for(1)) == 1
    with Session(rt.engine) as session:
        delivered = [
            entry.data["channel"]
            for entry in get_change_timeline(session=session, change_id=change_id)
            if entry.kind == "notified"
        ]
    assert sorted(delivered) == ["chat", "email"]

    clock.advance(timedelta(minutes=2))
    await run(rt)
    assert len(smtp_server.mails) == 1 and len(http_sink.requests) == 1, "delivered once"
    # The runner's redelivery runs are found by the change's tag: the failed one, the good one.
    redeliveries = await runs_tagged(f"change:{change_number(change_id)}", since)
    assert [name for _, name in redeliveries] == ["1 notification", "1 notification"]


async def test_an_approval_request_that_failed_is_kept_and_delivered_once_when_mail_is_back(
    rt, smtp_server
):
    from itilflow.flows.notify import deliver_and_keep
    from itilflow.models import ChangeStatus
    from itilflow.services import changes
    from itilflow.tasks.change.request_approvals import approval_step

    clock.freeze(NOW)
    rt.settings.notify_retry_delays = [0.1]
    with session_scope(rt.engine) as session:
        change = submit_change(
            session=session,
            new=NewChange(title="Patch the database host", plan=PLAN),
            actor="test",
        )
        change.status = ChangeStatus.awaiting_approval
        change.risk_level = "low"
        session.add(change)
        change_id, version = change.id, change.version
    assert change_id is not None
    smtp_server.stop()

    step = approval_step.fn(change_id, version)
    assert step.outcome == "pending" and step.mails, step
    assert await deliver_and_keep(step.mails) == len(step.mails)  # kept, not dropped
    assert {t.kind for t in kept(rt, change_id)} == {"notify"}
    assert "notification_failed" in timeline_kinds(rt, change_id)
    # Asked already: a second step plans no second request mail.
    assert approval_step.fn(change_id, version).mails == []

    smtp_server.start()
    clock.advance(timedelta(minutes=1))
    await run(rt)
    assert not any(t.pending for t in kept(rt, change_id))
    mails = smtp_server.wait_for(len(step.mails))
    assert sorted(r for m in mails for r in m.rcpt_tos) == sorted(
        address for plan in step.mails for address in plan["emails"]
    )
    assert all("/approvals/" in m.message.get_body(("plain",)).get_content() for m in mails)
    clock.advance(timedelta(minutes=2))
    await run(rt)
    assert len(smtp_server.mails) == len(mails), "delivered once"
    with session_scope(rt.engine) as session:
        assert changes.load_change(session, change_id).status == ChangeStatus.awaiting_approval
