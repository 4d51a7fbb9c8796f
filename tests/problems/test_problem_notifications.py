"""Problems' messages go through the incidents' delivery pipeline: with the mail server and the
chat service down, the review's messages are on each problem's timeline and kept; the runner
delivers each once when they are back, and the next review sends nothing again. On the Prefect
test server, the real SMTP server (stopped, then started again) and the chat sink."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from itilflow import clock
from itilflow.flows.problem import review_problems
from itilflow.models import FlowTrigger, Problem, get_problem_timeline
from tests.flows.test_batches import run
from tests.problems.history import NOW, load_history

pytestmark = pytest.mark.usefixtures("prefect_server")


def kept(rt) -> list[FlowTrigger]:
    with Session(rt.engine) as session:
        query = select(FlowTrigger).where(FlowTrigger.problem_id.is_not(None))  # type: ignore[union-attr]
        return list(session.exec(query))


def timeline_kinds(rt) -> dict[str, list[str]]:
    with Session(rt.engine) as session:
        return {
            problem.number: [
                e.kind for e in get_problem_timeline(session=session, problem_id=problem.id)
            ]
            for problem in session.exec(select(Problem))
        }


async def test_the_reviews_messages_are_kept_and_delivered_once_when_mail_is_back(
    rt, smtp_server, http_sink
):
    load_history(rt.engine)
    clock.freeze(NOW)
    rt.settings.notify_retry_delays = [0.1]
    smtp_server.stop()
    http_sink.status = 500

    result = await review_problems()

    assert len(result["events"]) == 3 and result["kept"] == 3
    assert all(sorted(channels) == ["chat", "email"] for channels in result["notified"].values())
    triggers = kept(rt)
    assert len(triggers) == 3 and all(t.pending and t.kind == "notify" for t in triggers)
    assert all("notification_failed" in kinds for kinds in timeline_kinds(rt).values())

    smtp_server.start()
    http_sink.clear()  # the sink keeps the requests it refused too
    http_sink.status = 200
    clock.advance(timedelta(seconds=16))
    await run(rt)
    assert not any(t.pending for t in kept(rt))
    mails = smtp_server.wait_for(3)
    assert sorted(mail.rcpt_tos[0] for mail in mails) == [
        "chen@example.com",
        "sun@example.com",
        "zhao@example.com",
    ]
    numbers = Counter(
        number
        for mail in mails
        for number in timeline_kinds(rt)
        if number in mail.message["Subject"]
    )
    assert sorted(numbers.values()) == [1, 1, 1]
    assert len(http_sink.wait_for(3)) == 3
    for kinds in timeline_kinds(rt).values():
        assert kinds.count("notified") == 2  # email and chat, once each

    again = await review_problems()
    clock.advance(timedelta(minutes=2))
    await run(rt)
    assert again["notified"] == {} and again["kept"] == 0
    assert len(smtp_server.mails) == 3 and len(http_sink.requests) == 3, "delivered once"
