"""The email channel end to end: a real dovecot, the real SMTP peer, the real Prefect test
server, the runner, and the gateway for the agent's side."""

from __future__ import annotations

from email.utils import parseaddr

import pytest
from sqlmodel import Session, select

from itilflow.dispatch.runner import Runner
from itilflow.flows.mail import read_mailbox
from itilflow.models import Incident, MailMessage, get_engineer, get_timeline
from tests.support.mail import bounce_for, make_mail

pytestmark = pytest.mark.usefixtures("prefect_server")


async def run_runner(rt) -> Runner:
    runner = Runner(rt.engine, concurrency=4, poll_seconds=0.05)
    await runner.run_until_idle(timeout=120)
    assert runner.failed == 0
    return runner


def mails_to(smtp_server, address: str) -> list:
    return [m for m in smtp_server.mails if address in m.rcpt_tos]


def replies_told(smtp_server, address: str) -> list:
    """The "reporter replied" notices an engineer got."""
    return [m for m in mails_to(smtp_server, address) if "replied" in m.message["Subject"]]


def outcomes(rt) -> dict[str, str]:
    with Session(rt.engine) as session:
        return {row.message_id: row.outcome for row in session.exec(select(MailMessage))}


async def test_a_mail_opens_an_incident_and_its_thread_comes_back_to_it(
    mail_rt, client, dovecot, smtp_server
):
    rt = mail_rt
    first = make_mail(attachments=[("error.log", b"E42 at 08:02\n"), ("dump.bin", b"x" * 2048)])
    dovecot.append(bytes(first))
    result = read_mailbox()
    assert result["opened"] == 1
    await run_runner(rt)

    with Session(rt.engine) as session:
        [incident] = session.exec(select(Incident)).all()
        number = incident.number
        assert incident.source == "email"
        assert incident.reporter_email == "ada@customer.example"
        assert incident.status.value == "assigned"  # the open flow ran on it
        kinds = [e.kind for e in get_timeline(session=session, incident_id=incident.id)]
    assert "reporter" in kinds and "attachments" in kinds

    # The acknowledgement carries the reference, in the reporter's thread.
    [ack] = mails_to(smtp_server, "ada@customer.example")
    assert number in ack.message["Subject"]
    assert ack.message["In-Reply-To"] == first["Message-ID"]
    assert first["Message-ID"] in ack.message["References"]
    assert ack.message["Message-ID"].startswith(f"<itilflow.{number}.")
    assert ack.message["Auto-Submitted"] == "auto-replied"

    # A reply with In-Reply-To (its subject without the reference) threads onto the incident.
    reply = make_mail(
        subject="Re: the printer",
        body="It also smells of burnt toner.",
        in_reply_to=ack.message["Message-ID"],
        references=[first["Message-ID"], ack.message["Message-ID"]],
    )
    dovecot.append(bytes(reply))
    assert read_mailbox()["threaded"] == 1
    # Whoever works on it hears of the reply at once.
    await run_runner(rt)
    with Session(rt.engine) as session:
        assignee = get_engineer(
            session=session, username=session.get(Incident, incident.id).assignee
        )
    [told] = replies_told(smtp_server, assignee.email)
    assert number in told.message["Subject"]
    assert "burnt toner" in told.message.get_body(("plain",)).get_content()

    # On hold, then the reporter's reply (by the reference in the subject only) resumes it.
    held = client.post(
        f"/api/incidents/{number}/hold", json={"note": "waiting for the reporter's photo"}
    )
    assert held.status_code == 200, held.text
    dovecot.append(bytes(make_mail(subject=f"Photo for {number}", body="Attached, see below.")))
    assert read_mailbox()["threaded"] == 1
    with Session(rt.engine) as session:
        incident = session.get(Incident, incident.id)
        assert incident.status.value != "on_hold"
        entries = get_timeline(session=session, incident_id=incident.id)
    comments = [e for e in entries if e.kind == "commented"]
    assert [c.data.get("via") for c in comments] == ["email", "email"]
    assert "resumed" in [e.kind for e in entries]
    await run_runner(rt)
    told = replies_told(smtp_server, assignee.email)
    assert (
        len(told) == 2 and "clock runs again" in told[1].message.get_body(("plain",)).get_content()
    )

    # An auto-reply and a bounce are recorded and change nothing.
    auto = make_mail(subject="Out of office", headers={"Auto-Submitted": "auto-replied"})
    dovecot.append(bytes(auto))
    dovecot.append(bounce_for(first))
    result = read_mailbox()
    assert result.get("auto_reply") == 1 and result.get("bounce") == 1
    # Our own acknowledgement, looped back into the mailbox (an alias), is recognised.
    dovecot.append(bytes(ack.message))
    assert read_mailbox().get("own") == 1
    with Session(rt.engine) as session:
        assert len(session.exec(select(Incident)).all()) == 1

    # An agent's comment to the reporter goes out as a mail in the same thread.
    before = len(mails_to(smtp_server, "ada@customer.example"))
    said = client.post(
        f"/api/incidents/{number}/comment",
        json={"note": "A technician is on the way.", "visibility": "public"},
    )
    assert said.status_code == 200, said.text
    await run_runner(rt)
    answers = mails_to(smtp_server, "ada@customer.example")[before:]
    [answer] = [m for m in answers if "technician" in m.message.get_body(("plain",)).get_content()]
    assert number in answer.message["Subject"]
    assert first["Message-ID"] in answer.message["References"]
    assert "Auto-Submitted" not in answer.message
    assert parseaddr(answer.message["From"])[1] == "servicedesk@desk.example.org"

    # Every mail is marked done in the mailbox; none is left for the next run.
    assert all("$Itilflow" in flags for flags in dovecot.flags())
    assert read_mailbox() == {"more": 0}
