"""The SMTP server is down and the chat service answers 500 for a while: every message is
retried, each failure is on the timeline, and each is delivered exactly once when its channel
is back. The outage lasts ITILFLOW_FAULT_OUTAGE_SECONDS (20 by default; 120 for the issue's two
minutes, which the README's figures were measured with)."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter

from sqlmodel import Session, select

from itilflow.dispatch.runner import Runner
from itilflow.models import FlowTrigger, TimelineEntry

INCIDENTS = 8
OUTAGE = float(os.environ.get("ITILFLOW_FAULT_OUTAGE_SECONDS", "20"))


def timeline(rt, kind: str) -> list[TimelineEntry]:
    with Session(rt.engine) as session:
        return list(session.exec(select(TimelineEntry).where(TimelineEntry.kind == kind)))


def kept_pending(rt) -> int:
    with Session(rt.engine) as session:
        triggers = session.exec(select(FlowTrigger).where(FlowTrigger.kind == "notify")).all()
        return sum(1 for trigger in triggers if trigger.pending)


async def test_mail_and_chat_down_for_a_while_every_message_delivered_once(
    client, rt, smtp_server, http_sink, prefect_server, fault_figures
):
    rt.settings.redeliver_after_seconds = 2
    smtp_server.stop()
    http_sink.status = 500
    numbers = [
        client.post(
            "/api/incidents",
            json={"title": f"payment node {n} down", "impact": "high", "urgency": "high"},
        ).json()["number"]
        for n in range(INCIDENTS)
    ]
    stop = asyncio.Event()
    runner = Runner(rt.engine, poll_seconds=0.1)
    running = asyncio.create_task(runner.run(stop))
    down_at = time.monotonic()
    await asyncio.sleep(OUTAGE)
    failed_during_outage = len(timeline(rt, "notification_failed"))
    http_sink.clear()  # the sink keeps what it refused too
    smtp_server.start()
    http_sink.status = 200
    back_at = time.monotonic()
    deadline = back_at + 120 + OUTAGE
    while (kept_pending(rt) or len(timeline(rt, "notified")) < 2 * INCIDENTS) and (
        time.monotonic() < deadline
    ):
        await asyncio.sleep(0.5)
    delivered_after = time.monotonic() - back_at
    stop.set()
    await running

    mails = Counter(
        number
        for mail in smtp_server.mails
        for number in numbers
        if number in mail.message["Subject"]
    )
    chats = Counter(
        number for chat in http_sink.requests for number in numbers if number in chat.json["title"]
    )
    fault_figures(
        f"smtp down + chat 500 for {OUTAGE:.0f} s",
        incidents=INCIDENTS,
        failures_on_timeline=failed_during_outage,
        mails_delivered=sum(mails.values()),
        chats_delivered=sum(chats.values()),
        delivered_s_after_return=round(delivered_after, 1),
        outage_s=round(back_at - down_at, 1),
    )
    assert failed_during_outage >= 2 * INCIDENTS, "each failure is on the timeline"
    assert kept_pending(rt) == 0
    assert all(mails[number] == 1 for number in numbers), mails
    assert all(chats[number] == 1 for number in numbers), chats
