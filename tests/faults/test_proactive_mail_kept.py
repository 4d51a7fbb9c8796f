"""A proactive notice's mails when the mail server refuses the customer's address: the owner
group's proposal goes out, the customer's notice is kept (a `notify` trigger about the notice)
and the runner delivers it once the server takes it; a re-run sends nothing twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from itilflow import clock
from itilflow.models import FlowTrigger, ProactiveNotice, get_proactive_timeline
from tests.flows.test_batches import run
from tests.inspections.test_proactive_notices import CIS, edge, inspect, settings  # noqa: F401

pytestmark = pytest.mark.usefixtures("prefect_server")


def kept(rt) -> list[FlowTrigger]:
    with Session(rt.engine) as session:
        query = select(FlowTrigger).where(FlowTrigger.proactive_id.is_not(None))  # type: ignore[union-attr]
        return list(session.exec(query))


async def test_a_refused_customer_mail_is_kept_and_delivered_once(rt, client, smtp_server) -> None:
    for ci in CIS:
        assert client.post("/api/cis", json=ci).status_code == 201
    rt.settings.notify_retry_delays = [0.1]
    smtp_server.fail_with(
        "451 4.3.0 try again later", at="rcpt", only_for=("shop-owner@example.com",)
    )

    first = await inspect()
    [(number, event)] = first["proactive"].items()
    assert event == "proposed"
    [proposal] = smtp_server.wait_for(1, timeout=20)
    assert "chen@example.com" in proposal.rcpt_tos
    [trigger] = kept(rt)
    assert trigger.kind == "notify" and trigger.pending and trigger.key == "notify:customer"

    smtp_server.fail_with(None)
    clock.advance(timedelta(seconds=16))
    await run(rt)
    assert not any(t.pending for t in kept(rt))
    mails = smtp_server.wait_for(2, timeout=20)
    assert mails[1].rcpt_tos == ("shop-owner@example.com",)
    with Session(rt.engine) as session:
        notice = session.exec(select(ProactiveNotice)).one()
        assert notice.number == number
        kinds = [e.kind for e in get_proactive_timeline(session=session, proactive_id=notice.id)]
    assert kinds.count("notification_failed") == 1 and kinds.count("notified") == 2

    again = await inspect()
    clock.advance(timedelta(minutes=2))
    await run(rt)
    assert again["proactive"] == {}
    assert len(smtp_server.mails) == 2, "delivered once"
