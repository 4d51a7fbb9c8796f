"""The flows on the Prefect test server: the weekly review end to end, and a new incident that
matches a known error in the real open-incident flow (runner, SMTP server, chat sink)."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from itilflow import clock
from itilflow.dispatch.runner import Runner
from itilflow.flows.problem import review_problems
from itilflow.models import Problem, get_problem_timeline, get_timeline
from tests.problems.history import (
    NOW,
    WORKAROUND,
    load_history,
    make_known_error,
    problem_for,
    review,
)

pytestmark = pytest.mark.usefixtures("prefect_server")


async def test_the_review_opens_problems_and_tells_their_owners_once(
    rt, smtp_server, http_sink
) -> None:
    load_history(rt.engine)
    clock.freeze(NOW)

    result = await review_problems()

    assert sorted(result["clusters"]) == [
        "category=network (5)",
        "ci=shop-payment (3)",
        "fingerprint=fp-disk-erp (3)",
    ]
    assert len(result["events"]) == 3 and all(e.endswith("opened") for e in result["events"])
    mails = smtp_server.wait_for(3)
    by_recipient = {mail.rcpt_tos[0]: mail.message for mail in mails}
    assert set(by_recipient) == {"chen@example.com", "zhao@example.com", "sun@example.com"}
    payment = problem_for(rt.engine, "ci", "shop-payment")
    subject = by_recipient["chen@example.com"]["Subject"]
    assert subject == f"[{payment.number}] New problem: Repeated incidents on shop-payment"
    body = by_recipient["chen@example.com"].get_body(("plain",)).get_content()
    assert "Payment module returns HTTP 500 at checkout" in body
    chats = http_sink.wait_for(3)
    assert {payment.number in chat.json["title"] for chat in chats} == {True, False}
    with Session(rt.engine) as session:
        kinds = [e.kind for e in get_problem_timeline(session=session, problem_id=payment.id)]
    assert kinds[-2:] == ["notified", "notified"]

    again = await review_problems()
    assert again["events"] == [] and again["notified"] == {}
    assert len(smtp_server.mails) == 3
    with Session(rt.engine) as session:
        assert len(session.exec(select(Problem)).all()) == 3


async def test_a_new_incident_gets_the_known_errors_workaround(
    client, rt, smtp_server, http_sink
) -> None:
    load_history(rt.engine)
    clock.freeze(NOW)
    review(rt.engine, rt.policies)
    payment = problem_for(rt.engine, "ci", "shop-payment")
    make_known_error(rt.engine, rt.policies, payment.id)

    response = client.post(
        "/api/incidents",
        json={
            "title": "Checkout fails for every customer",
            "category": "software",
            "ci": "shop-payment",
            "impact": "high",
            "urgency": "high",
        },
    )
    ref = response.json()
    runner = Runner(rt.engine, concurrency=2, poll_seconds=0.05)
    await runner.run_until_idle(timeout=120)
    assert runner.failed == 0

    with Session(rt.engine) as session:
        timeline = get_timeline(session=session, incident_id=ref["id"])
    kinds = [entry.kind for entry in timeline]
    assert kinds[:5] == ["opened", "classified", "assigned", "known_error_matched", "notified"]
    [matched] = [entry for entry in timeline if entry.kind == "known_error_matched"]
    assert WORKAROUND in matched.message
    assert matched.data["known_error"]["problem"] == payment.number

    [mail] = smtp_server.wait_for(1)
    text = mail.message.get_body(("plain",)).get_content()
    assert f"Known error {payment.number}" in text
    assert WORKAROUND in text
    html = mail.message.get_body(("html",)).get_content()
    assert WORKAROUND in html
    chat = http_sink.wait_for(1)[0].json
    assert WORKAROUND in chat["message"]
