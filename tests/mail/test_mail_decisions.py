"""The intake's decisions without the engine or a mailbox: parsing, loop protection, which
incident a mail names, and take_mail on a real (migrated) database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from itilflow import clock
from itilflow.demo import load_people
from itilflow.models import (
    Incident,
    IncidentStatus,
    MailAttachment,
    MailMessage,
    get_engine,
    get_timeline,
)
from itilflow.notifications.mail_thread import message_id, thread_headers
from itilflow.policies import MailPolicy, default_policy_dir, load_policies, mailbox_password
from itilflow.policies.loader import PolicyError
from itilflow.policies.mail import MailPasswordMissing
from itilflow.services.incident_actions import hold
from itilflow.services.mail_intake import Mailbox, take_mail
from itilflow.services.mail_parse import loop_reason, parse_mail, subject_numbers, thread_numbers
from tests.conftest import make_settings
from tests.support.mail import bounce_for, make_mail

DOMAIN = "desk.example.org"
MAILBOX = Mailbox(addresses=frozenset({"servicedesk@desk.example.org"}), domain=DOMAIN)


def parsed(**fields):
    return parse_mail(bytes(make_mail(**fields)))


def loop(mail) -> str | None:
    return loop_reason(mail, own_addresses=set(MAILBOX.addresses), own_domain=DOMAIN)


# --- parsing and loop protection ---------------------------------------------------------------


def test_a_plain_request_is_no_loop():
    mail = parsed(subject="Printer jammed", body="Error E42")
    assert loop(mail) is None
    assert mail.sender == "ada@customer.example"
    assert mail.sender_name == "Ada Reporter"
    assert mail.body == "Error E42"


@pytest.mark.parametrize("value", ["auto-replied", "auto-generated", "auto-notified; x=1"])
def test_auto_submitted_other_than_no_is_an_auto_reply(value):
    assert loop(parsed(headers={"Auto-Submitted": value})) == "auto_reply"


def test_auto_submitted_no_is_a_person():
    assert loop(parsed(headers={"Auto-Submitted": "no"})) is None


@pytest.mark.parametrize("precedence", ["bulk", "junk", "auto_reply"])
def test_precedence_bulk_is_an_auto_reply(precedence):
    assert loop(parsed(headers={"Precedence": precedence})) == "auto_reply"


def test_bounces_are_recognised_by_report_null_sender_or_daemon():
    assert loop(parse_mail(bounce_for(make_mail()))) == "bounce"
    assert loop(parsed(headers={"Return-Path": "<>"})) == "bounce"
    assert loop(parsed(sender="postmaster@customer.example")) == "bounce"
    assert loop(parsed(sender="")) == "bounce"


def test_our_own_mails_are_recognised_by_header_address_or_message_id():
    assert loop(parsed(headers={"X-Itilflow-Origin": DOMAIN})) == "own"
    assert loop(parsed(sender="Desk <SERVICEDESK@desk.example.org>")) == "own"
    ours = message_id("INC-000007", "opened", DOMAIN)
    assert loop(parsed(message_id=ours)) == "own"
    # Someone else's domain in a look-alike id is not ours.
    assert loop(parsed(message_id=message_id("INC-000007", "opened", "evil.example"))) is None


def test_a_mail_without_message_id_gets_a_stable_hash():
    raw = bytes(make_mail()).replace(b"Message-ID:", b"X-Old-ID:")
    assert parse_mail(raw).message_id.startswith("sha256:")
    assert parse_mail(raw).message_id == parse_mail(raw).message_id


def test_incident_numbers_from_our_ids_and_the_subject():
    mail = parsed(
        subject="Re: [INC-42] and INC-000043",
        in_reply_to=message_id("INC-000007", "opened", DOMAIN),
        references=["<other@customer.example>", message_id("INC-000005", "x", "evil.example")],
    )
    assert thread_numbers(mail, own_domain=DOMAIN) == ["INC-000007"]
    assert subject_numbers(mail) == ["INC-000042", "INC-000043"]


# --- the policy ---------------------------------------------------------------------------------


def test_mail_is_off_by_default_and_its_password_never_in_yaml(tmp_path):
    assert load_policies().mail.enabled is False
    folder = tmp_path / "p"
    folder.mkdir()
    for name in ("priority", "sla", "escalation", "assignment", "routing", "change"):
        source = default_policy_dir().joinpath(f"{name}.yaml")
        (folder / f"{name}.yaml").write_text(source.read_text())
    (folder / "mail.yaml").write_text("enabled: true\npassword: hunter2\n")
    with pytest.raises(PolicyError) as refused:
        load_policies(folder)
    assert "mail.yaml" in str(refused.value) and "password" in str(refused.value)


def test_the_password_comes_from_the_variable_or_the_file(tmp_path):
    policy = MailPolicy(enabled=True, password_env="MAILPW")
    assert mailbox_password(policy, {"MAILPW": "s3cret"}) == "s3cret"
    with pytest.raises(MailPasswordMissing, match=r"\$MAILPW is not set"):
        mailbox_password(policy, {})
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    policy = MailPolicy(enabled=True, password_env=None, password_file=secret)
    assert mailbox_password(policy, {}) == "from-file"


# --- take_mail on a database --------------------------------------------------------------------


@pytest.fixture
def session(tmp_path, database_url):
    load_people(make_settings(tmp_path, database_url=database_url))
    with Session(get_engine(database_url), expire_on_commit=False) as session:
        yield session


def policies(**mail):
    base = load_policies()
    return base.model_copy(update={"mail": MailPolicy(**{"enabled": False, **mail})})


def take(session, mail, **policy):
    taken = take_mail(session, mail, mailbox=MAILBOX, policies=policies(**policy))
    session.commit()
    return taken


def test_a_known_person_is_matched_with_language_and_history(session):
    first = take(session, parsed(sender="Chen Jie <CHEN@example.com>", subject="VPN down"))
    second = take(session, parsed(sender="chen@example.com", subject="VPN down again"))
    incident = session.get(Incident, second.incident_id)
    assert (first.outcome, second.outcome) == ("opened", "opened")
    assert incident.reporter_name == "Chen Jie"
    [reporter] = [
        e for e in get_timeline(session=session, incident_id=incident.id) if e.kind == "reporter"
    ]
    assert reporter.data == {
        "email": "chen@example.com",
        "username": "chen",
        "known": True,
        "earlier_incidents": 1,
    }


def test_a_new_reporter_is_recorded(session):
    taken = take(session, parsed())
    entries = get_timeline(session=session, incident_id=taken.incident_id)
    [reporter] = [e for e in entries if e.kind == "reporter"]
    assert reporter.data["known"] is False and reporter.data["email"] == "ada@customer.example"


def test_the_same_message_twice_is_stored_once(session):
    mail = parsed()
    assert take(session, mail).outcome == "opened"
    again = take(session, mail)
    assert again.outcome == "duplicate"
    assert len(session.exec(select(Incident)).all()) == 1
    assert len(session.exec(select(MailMessage)).all()) == 1


def test_a_reply_by_the_reporters_own_message_id_threads(session):
    first = parsed()
    opened = take(session, first)
    reply = parsed(subject="one more thing", in_reply_to=first.message_id)
    assert take(session, reply).incident_id == opened.incident_id


def test_a_reply_from_someone_else_does_not_resume_a_held_incident(session):
    opened = take(session, parsed())
    incident = session.get(Incident, opened.incident_id)
    hold(session, incident, actor="lin", note="waiting", policies=policies())
    session.commit()
    other = parsed(sender="boss@customer.example", subject=f"Re: {incident.number}")
    taken = take(session, other)
    assert (taken.outcome, taken.resumed) == ("threaded", False)
    assert session.get(Incident, incident.id).status == IncidentStatus.on_hold
    mine = take(session, parsed(subject=f"Re: {incident.number}"))
    assert mine.resumed is True
    assert session.get(Incident, incident.id).status != IncidentStatus.on_hold


def test_a_reply_to_a_closed_incident_opens_a_new_one(session):
    opened = take(session, parsed())
    incident = session.get(Incident, opened.incident_id)
    incident.status = IncidentStatus.closed
    session.add(incident)
    session.commit()
    taken = take(session, parsed(subject=f"Re: {incident.number} it is back"))
    assert taken.outcome == "opened" and taken.incident_id != incident.id
    assert session.get(Incident, taken.incident_id).description.startswith(
        f"Follows {incident.number}"
    )


def test_attachments_within_the_limit_are_kept_the_rest_refused(session):
    mail = parsed(attachments=[("small.txt", b"x" * 10), ("big.iso", b"y" * 101)])
    taken = take(session, mail, attachment_max_bytes=100)
    rows = session.exec(select(MailAttachment)).all()
    by_name = {row.filename: row for row in rows}
    assert by_name["small.txt"].data == b"x" * 10 and by_name["small.txt"].refused is None
    assert by_name["big.iso"].data is None and "over the limit" in by_name["big.iso"].refused
    entries = get_timeline(session=session, incident_id=taken.incident_id)
    [listed] = [e for e in entries if e.kind == "attachments"]
    assert "refused (too large): big.iso" in listed.message


def test_a_sender_over_the_rate_limit_is_recorded_not_stored(session):
    clock.freeze(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    limit = {"mails": 2, "per": "1h"}
    outcomes = [take(session, parsed(), rate_limit=limit).outcome for _ in range(3)]
    assert outcomes == ["opened", "opened", "rate_limited"]
    clock.freeze(datetime(2026, 12, 1, 9, 0, tzinfo=UTC) + timedelta(hours=1, seconds=1))
    assert take(session, parsed(), rate_limit=limit).outcome == "opened"
    assert len(session.exec(select(Incident)).all()) == 3


def test_ignored_mails_are_recorded_with_their_reason(session):
    taken = take(session, parsed(headers={"Auto-Submitted": "auto-replied"}))
    assert (taken.outcome, taken.incident_id) == ("auto_reply", None)
    [row] = session.exec(select(MailMessage)).all()
    assert row.outcome == "auto_reply" and "automatic reply" in row.reason
    assert session.exec(select(Incident)).all() == []


def test_thread_headers_reference_the_reporters_mails(session):
    first = parsed()
    opened = take(session, first)
    reply = parsed(in_reply_to=first.message_id)
    take(session, reply)
    headers = thread_headers(
        session,
        opened.incident_id,
        key="opened",
        template="incident_opened",
        mail_from="Desk <servicedesk@desk.example.org>",
    )
    number = f"INC-{opened.incident_id:06d}"
    assert headers["Message-ID"] == message_id(number, "opened", DOMAIN)
    assert headers["In-Reply-To"] == reply.message_id
    assert headers["References"].split() == [
        f"<itilflow.{number}@{DOMAIN}>",
        first.message_id,
        reply.message_id,
    ]
    assert headers["Auto-Submitted"] == "auto-replied"
    comment = thread_headers(
        session, opened.incident_id, key="c", template="reporter_comment", mail_from=DOMAIN
    )
    assert "Auto-Submitted" not in comment
