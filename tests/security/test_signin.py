"""Sign-in for people in a browser: the emailed one-time code and link, sessions and CSRF.

The real gateway app (TestClient) and the real SMTP capture: every code and link is read from
the mail the gateway sent. Each refusal is checked for its answer, its log line and that it
changed nothing (no session, nothing used up).
"""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from itilflow import clock
from itilflow.gateway.app import create_app
from itilflow.models import ApprovalRequest, BrowserSession, SigninRequest, get_change_timeline
from itilflow.services import signin, surveys
from tests.support.approval_codes import make_waiting_change, wait_for_code
from tests.support.csrf import csrf_of, post_form, session_cookie
from tests.support.smtp import SmtpCapture

LINK = re.compile(r"(/signin/link/[\w.\-]+)")
# \r?: a mail the capture parsed after another test's mails may keep the wire's CRLF.
CODE = re.compile(r"^Your code: (\d{8})\r?$", re.MULTILINE)


@pytest.fixture
def browser(rt):
    """A browser: a client without the API token, keeping its cookies."""
    with TestClient(create_app(rt.settings, rt.policies)) as client:
        yield client


def sessions(rt) -> int:
    with Session(rt.engine) as session:
        return session.exec(select(func.count()).select_from(BrowserSession)).one()


def mail_to(smtp: SmtpCapture, address: str, nth: int = 1) -> tuple[str, str]:
    """The code and the link path of the `nth` sign-in mail to `address`."""
    # Only sign-in mails count: a run another test left paused in this process may still mail
    # the same people through the runtime this test configured.
    deadline = time.monotonic() + 10
    while True:
        bodies = [
            body
            for mail in smtp.mails
            if address in mail.rcpt_tos
            and CODE.search(body := mail.message.get_body(("plain",)).get_content())
        ]
        if len(bodies) >= nth or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(bodies) >= nth, f"expected {nth} sign-in mail(s) to {address}, got {len(bodies)}"
    body = bodies[nth - 1]
    return CODE.search(body).group(1), LINK.search(body).group(1)


def ask(browser: TestClient, name: str) -> tuple[object, str]:
    """Press the sign-in form for `name`; the answer and the ticket of its code form."""
    opened = browser.get("/signin")
    answer = browser.post("/signin", data={"name": name, "csrf": csrf_of(opened.text)})
    ticket = re.search(r'name="ticket" value="([^"]+)"', answer.text)
    return answer, ticket.group(1) if ticket else ""


def enter(browser: TestClient, ticket: str, code: str, **extra: str):
    form = browser.get("/signin")
    data = {"ticket": ticket, "code": code, "csrf": csrf_of(form.text)} | extra
    return browser.post("/signin/code", data=data, follow_redirects=False)


def test_the_code_from_the_mail_signs_in_once(browser, rt, smtp_server):
    answer, ticket = ask(browser, "chen")
    assert answer.status_code == 200 and "Check your mail" in answer.text
    code, _ = mail_to(smtp_server, "chen@example.com")
    assert [m.rcpt_tos for m in smtp_server.mails] == [("chen@example.com",)]
    assert code not in answer.text
    signed = enter(browser, ticket, code)
    assert signed.status_code == 303 and signed.headers["location"] == "/signin"
    assert "Signed in as <strong>chen</strong>" in browser.get("/signin").text
    # The same code again, from another browser: used.
    with TestClient(browser.app) as other:
        replay = enter(other, ticket, code)
        assert replay.status_code == 403 and "used or is void" in replay.text
        assert session_cookie(other) is None
    assert sessions(rt) == 1


def test_sign_in_by_name_or_address_mails_the_address_on_record_only(browser, smtp_server):
    ask(browser, "CHEN@example.com")
    opened = browser.get("/signin")
    browser.post(
        "/signin",
        data={"name": "chen", "email": "evil@example.net", "csrf": csrf_of(opened.text)},
        headers={"From": "evil@example.net"},
    )
    smtp_server.wait_for(2)
    assert [m.rcpt_tos for m in smtp_server.mails] == [("chen@example.com",)] * 2


def test_the_page_does_not_tell_who_exists(browser, rt, smtp_server):
    known, known_ticket = ask(browser, "chen")
    unknown, unknown_ticket = ask(browser, "nobody-here")
    shown = [
        re.sub(r'value="[^"]*"', "", a.text).replace("nobody-here", "chen")
        for a in (known, unknown)
    ]
    assert known.status_code == unknown.status_code == 200 and shown[0] == shown[1]
    assert known_ticket and unknown_ticket
    smtp_server.wait_for(1)
    assert len(smtp_server.mails) == 1
    # The stranger's ticket takes no code at all.
    for guess in ("00000000", "12345678"):
        assert enter(browser, unknown_ticket, guess).status_code == 403
    assert sessions(rt) == 0


def test_a_wrong_code_is_refused_and_five_void_the_code(browser, rt, smtp_server, caplog):
    _, ticket = ask(browser, "chen")
    code, _ = mail_to(smtp_server, "chen@example.com")
    wrong = f"{(int(code) + 1) % 10**8:08d}"
    with caplog.at_level(logging.WARNING, logger="itilflow.gateway.signin"):
        answers = [enter(browser, ticket, wrong) for _ in range(5)]
    assert [a.status_code for a in answers] == [403] * 5
    assert "4 attempts left" in answers[0].text and "now void" in answers[-1].text
    assert "sign-in code refused" in caplog.text
    late = enter(browser, ticket, code)  # the right one, too late
    assert late.status_code == 403 and session_cookie(browser) is None
    assert sessions(rt) == 0


def test_another_persons_code_does_not_fit_my_ticket(browser, rt, smtp_server):
    _, chen_ticket = ask(browser, "chen")
    _, sun_ticket = ask(browser, "sun")
    smtp_server.wait_for(2)
    sun_code, _ = mail_to(smtp_server, "sun@example.com")
    assert enter(browser, chen_ticket, sun_code).status_code == 403
    assert sessions(rt) == 0
    assert enter(browser, sun_ticket, sun_code).status_code == 303  # and it still works for sun


def test_the_link_asks_first_and_signs_in_once(browser, rt, smtp_server):
    ask(browser, "chen")
    _, link = mail_to(smtp_server, "chen@example.com")
    with TestClient(browser.app) as phone:
        for _ in range(3):  # a mail scanner fetching the link signs nobody in
            shown = phone.get(link)
            assert shown.status_code == 200 and "Sign in as chen" in shown.text
        assert sessions(rt) == 0
        signed = phone.post(link, data={"csrf": csrf_of(shown.text)}, follow_redirects=False)
        assert signed.status_code == 303 and session_cookie(phone)
        again = phone.post(link, data={"csrf": csrf_of(shown.text)})
        assert again.status_code == 403 and "used or is void" in again.text
    # Using the link used the code too.
    assert sessions(rt) == 1


def test_an_expired_or_altered_link_signs_nobody_in(browser, rt, smtp_server):
    _, ticket = ask(browser, "chen")
    code, link = mail_to(smtp_server, "chen@example.com")
    shown = browser.get(link)
    altered = browser.post(link[:-2] + "xx", data={"csrf": csrf_of(shown.text)})
    assert altered.status_code == 403
    clock.advance(signin.SIGNIN_VALID_FOR + timedelta(seconds=1))
    assert browser.get(link).status_code == 400
    expired = browser.post(link, data={"csrf": csrf_of(shown.text)})
    assert expired.status_code == 403 and "expired" in expired.text
    assert enter(browser, ticket, code).status_code == 403
    assert sessions(rt) == 0


def test_a_post_without_or_with_a_wrong_csrf_token_changes_nothing(
    browser, rt, smtp_server, caplog
):
    opened = browser.get("/signin")
    with caplog.at_level(logging.WARNING, logger="itilflow.gateway.signin"):
        bare = browser.post("/signin", data={"name": "chen"})
        wrong = browser.post("/signin", data={"name": "chen", "csrf": "0" * 64})
    assert bare.status_code == wrong.status_code == 403
    assert "CSRF" in caplog.text
    # A token from another browser does not fit this browser's cookie.
    with TestClient(browser.app) as attacker:
        theirs = csrf_of(attacker.get("/signin").text)
    assert browser.post("/signin", data={"name": "chen", "csrf": theirs}).status_code == 403
    with Session(rt.engine) as session:
        assert session.exec(select(func.count()).select_from(SigninRequest)).one() == 0
    assert smtp_server.mails == []
    # The real form, for contrast.
    assert (
        browser.post("/signin", data={"name": "chen", "csrf": csrf_of(opened.text)}).status_code
        == 200
    )


def signed_in_browser(browser, smtp_server, name="chen", nth=1):
    _, ticket = ask(browser, name)
    code, _ = mail_to(smtp_server, f"{name}@example.com", nth=1)
    assert enter(browser, ticket, code).status_code == 303
    return browser


def test_cookie_flags(browser, smtp_server):
    signed_in_browser(browser, smtp_server)
    [cookie] = [c for c in browser.cookies.jar if c.name == "itilflow_session"]
    assert cookie.has_nonstandard_attr("HttpOnly") and not cookie.secure
    header = browser.get("/signin").headers.get("set-cookie", "")
    assert header == ""  # the CSRF cookie was set once, not on every page


def test_cookies_are_secure_behind_tls(rt, smtp_server):
    settings = rt.settings.model_copy(update={"public_url": "https://itil.example.com"})
    with TestClient(create_app(settings, rt.policies), base_url="https://testserver") as client:
        opened = client.get("/signin")
        csrf_header = opened.headers["set-cookie"]
        for flag in ("HttpOnly", "Secure", "SameSite=lax"):
            assert flag in csrf_header, csrf_header
        _, ticket = ask(client, "chen")
        code, link = mail_to(smtp_server, "chen@example.com")
        assert link.startswith("/signin/link/")
        answer = enter(client, ticket, code)
        header = answer.headers["set-cookie"]
        assert header.startswith("itilflow_session=")
        for flag in ("HttpOnly", "Secure", "SameSite=lax", "Path=/"):
            assert flag in header, header
    body = smtp_server.mails[0].message.get_body(("plain",)).get_content()
    assert "https://itil.example.com/signin/link/" in body  # links from the setting, not Host


def test_sign_out_revokes_the_session(browser, rt, smtp_server):
    signed_in_browser(browser, smtp_server)
    stolen = session_cookie(browser)
    page = browser.get("/signin")
    assert browser.post("/signout", data={"csrf": csrf_of(page.text)}).status_code == 200
    assert "Signed in as" not in browser.get("/signin").text
    with TestClient(browser.app, cookies={"itilflow_session": stolen}) as thief:
        assert "Signed in as" not in thief.get("/signin").text
    with Session(rt.engine) as session:
        [row] = session.exec(select(BrowserSession)).all()
        assert row.revoked_at is not None and row.revoked_by == "chen"


def test_an_admin_revokes_all_of_a_persons_sessions(browser, rt, smtp_server):
    signed_in_browser(browser, smtp_server)
    with Session(rt.engine) as session:
        assert signin.revoke_sessions_of(session=session, person="chen", revoked_by="zhou") == 1
        session.commit()
    assert "Signed in as" not in browser.get("/signin").text


def test_sessions_expire_when_idle_and_at_their_end(browser, rt, smtp_server):
    signed_in_browser(browser, smtp_server)
    idle = timedelta(minutes=rt.settings.session_idle_minutes)
    clock.advance(idle - timedelta(minutes=5))
    assert "Signed in as" in browser.get("/signin").text  # a use moves the idle expiry on
    clock.advance(idle - timedelta(minutes=5))
    assert "Signed in as" in browser.get("/signin").text
    clock.advance(idle + timedelta(seconds=1))
    assert "Signed in as" not in browser.get("/signin").text


def test_a_session_ends_at_its_absolute_expiry(browser, rt, smtp_server):
    signed_in_browser(browser, smtp_server)
    step = timedelta(minutes=rt.settings.session_idle_minutes - 1)
    end = timedelta(hours=rt.settings.session_max_hours)
    passed = timedelta(0)
    while passed + step < end:
        clock.advance(step)
        passed += step
        assert "Signed in as" in browser.get("/signin").text
    clock.advance(end - passed)
    assert "Signed in as" not in browser.get("/signin").text


def test_requests_are_rate_limited_per_person_and_per_address(browser, rt, smtp_server, caplog):
    for _ in range(signin.MAX_PER_PERSON + 2):
        answer, _ = ask(browser, "chen")
        assert answer.status_code == 200  # the same page: no hint who exists
    smtp_server.wait_for(signin.MAX_PER_PERSON)
    assert len(smtp_server.mails) == signin.MAX_PER_PERSON
    for _ in range(signin.MAX_PER_CLIENT - signin.MAX_PER_PERSON - 2):
        ask(browser, "nobody")
    with caplog.at_level(logging.WARNING, logger="itilflow.gateway.signin"):
        limited, _ = ask(browser, "sun")
    assert limited.status_code == 429 and "sign-in requests from" in caplog.text
    assert not [m for m in smtp_server.mails if "sun@example.com" in m.rcpt_tos]
    clock.advance(signin.RATE_WINDOW + timedelta(seconds=1))
    assert ask(browser, "sun")[0].status_code == 200


def test_next_goes_only_to_a_path_of_this_site(browser, smtp_server):
    _, ticket = ask(browser, "chen")
    code, _ = mail_to(smtp_server, "chen@example.com")
    answer = enter(browser, ticket, code, next="https://evil.example.net/")
    assert answer.headers["location"] == "/signin"


# ------------------------------------------------- the pages links open, signed in or not

PLAN = {
    "steps": [
        {
            "name": "noop",
            "do": {"kind": "shell", "command": "true"},
            "undo": {"kind": "shell", "command": "true"},
        }
    ]
}


def approvals_of(rt) -> list[tuple[str, str | None]]:
    with Session(rt.engine) as session:
        rows = session.exec(select(ApprovalRequest).order_by(ApprovalRequest.approver))
        return [(r.approver, r.decision) for r in rows]


def test_an_approval_link_refuses_a_browser_signed_in_as_someone_else(
    browser, rt, smtp_server, caplog
):
    change, tokens = make_waiting_change(rt, PLAN, risk_level="low")
    signed_in_browser(browser, smtp_server, "sun")
    link = f"/approvals/{tokens['chen']}"
    shown = browser.get(link)
    assert shown.status_code == 403 and "This link is for another person" in shown.text
    assert "signed in as sun" in shown.text and '<form method="post">' not in shown.text
    csrf = csrf_of(browser.get("/signin").text)  # a valid CSRF field: not what stops it
    mails = len(smtp_server.mails)
    with caplog.at_level(logging.WARNING, logger="itilflow.gateway.changes"):
        pressed = browser.post(link, data={"decision": "approve", "csrf": csrf})
    assert pressed.status_code == 403 and "for another person" in pressed.text
    assert "sun (signed in) used chen's link: refused" in caplog.text
    assert len(smtp_server.mails) == mails  # no code went to chen either
    assert approvals_of(rt) == [("chen", None), ("sun", None)]
    with Session(rt.engine) as session:
        [refusal] = [
            e
            for e in get_change_timeline(session=session, change_id=change.id)
            if e.kind == "approval_refused"
        ]
    assert refusal.actor == "sun" and "chen's approval link" in refusal.message


def test_an_approval_link_works_for_its_approver_signed_in_or_not(browser, rt, smtp_server):
    _, tokens = make_waiting_change(rt, PLAN, risk_level="low")
    signed_in_browser(browser, smtp_server, "chen")
    link = f"/approvals/{tokens['chen']}"
    pressed = post_form(browser, link, {"decision": "approve"})
    assert pressed.status_code == 200, pressed.text
    code = wait_for_code(smtp_server, "chen@example.com", nth=2)  # the first was the sign-in
    decided = post_form(browser, link, {"decision": "approve", "code": code})
    assert decided.status_code == 200 and "is recorded" in decided.text
    assert approvals_of(rt) == [("chen", "approve"), ("sun", None)]
    with TestClient(browser.app) as not_signed_in:  # sun's link, from a browser nobody signed in
        pressed = post_form(not_signed_in, f"/approvals/{tokens['sun']}", {"decision": "reject"})
        assert pressed.status_code == 200 and "s***@example.com" in pressed.text


def test_approval_and_survey_posts_without_the_csrf_field_change_nothing(
    client, browser, rt, smtp_server, caplog
):
    _, tokens = make_waiting_change(rt, PLAN, risk_level="low")
    link = f"/approvals/{tokens['chen']}"
    opened = client.post(
        "/api/incidents",
        json={"title": "Printer jam", "priority": "P4", "reporter_email": "owner@example.com"},
    )
    assert opened.status_code == 201, opened.text
    survey = f"/surveys/{surveys.survey_token(opened.json()['id'], secret=rt.secret)}"
    browser.get(link)  # the browser holds its CSRF cookie, but the POSTs leave the field out
    browser.get(survey)
    with caplog.at_level(logging.WARNING, logger="itilflow.gateway.signin"):
        for data in ({"decision": "approve"}, {"decision": "approve", "csrf": "f" * 64}):
            refused = browser.post(link, data=data)
            assert refused.status_code == 403 and "not recorded" in refused.text
        for data in ({"score": "1"}, {"score": "1", "csrf": "f" * 64}):
            assert browser.post(survey, data=data).status_code == 403
    assert caplog.text.count("refused: missing or wrong CSRF token") == 4
    assert smtp_server.mails == []  # no code was mailed
    assert approvals_of(rt) == [("chen", None), ("sun", None)]
    answer = client.get(f"/api/incidents/{opened.json()['id']}").json()
    assert answer["survey_score"] is None


def test_signing_in_again_ends_the_browsers_earlier_session(browser, rt, smtp_server):
    signed_in_browser(browser, smtp_server, "chen")
    earlier = session_cookie(browser)
    _, ticket = ask(browser, "sun")
    code, _ = mail_to(smtp_server, "sun@example.com")
    assert enter(browser, ticket, code).status_code == 303
    assert "Signed in as <strong>sun</strong>" in browser.get("/signin").text
    with TestClient(browser.app, cookies={"itilflow_session": earlier}) as replay:
        assert "Signed in as" not in replay.get("/signin").text
    with Session(rt.engine) as session:
        rows = session.exec(select(BrowserSession).order_by(BrowserSession.id)).all()
    assert [(r.person, r.revoked_at is not None) for r in rows] == [("chen", True), ("sun", False)]


def test_the_sign_in_pages_are_not_cached_nor_leak_their_link(browser, smtp_server):
    ask(browser, "chen")
    _, link = mail_to(smtp_server, "chen@example.com")
    for path in ("/signin", link):
        shown = browser.get(path)
        assert shown.headers["cache-control"] == "no-store"
        assert shown.headers["referrer-policy"] == "no-referrer"


def test_the_session_command_lists_and_revokes(browser, rt, smtp_server, monkeypatch, capsys):
    from itilflow.cli import main

    signed_in_browser(browser, smtp_server, "chen")
    monkeypatch.setenv("ITILFLOW_DATABASE_URL", rt.settings.database_url)
    assert main(["session", "list"]) == 0
    listed = capsys.readouterr().out
    assert re.search(r"^\s+1  chen\s+code ", listed, re.MULTILINE), listed
    assert session_cookie(browser) not in listed  # the cookie is nowhere but in the browser
    assert main(["session", "revoke", "--person", "chen"]) == 0
    assert "revoked 1 session(s) of chen" in capsys.readouterr().out
    assert "Signed in as" not in browser.get("/signin").text
    assert main(["session", "revoke", "99"]) == 1
    assert main(["session", "list", "--all"]) == 0
    assert "revoked by" in capsys.readouterr().out


def test_a_stranger_s_ticket_answers_like_a_wrong_code(browser, rt, smtp_server):
    _, known = ask(browser, "chen")
    _, unknown = ask(browser, "nobody-here")
    wrong = [enter(browser, ticket, "00000001") for ticket in (known, unknown)]
    assert [a.status_code for a in wrong] == [403, 403]
    assert wrong[0].text.replace(known, "T") == wrong[1].text.replace(unknown, "T")


def test_a_failed_mail_voids_its_code_and_looks_the_same(browser, rt, smtp_server, caplog):
    smtp_server.fail_with("451 4.3.0 try later", at="data")
    with caplog.at_level(logging.WARNING, logger="itilflow.gateway.signin"):
        failed, ticket = ask(browser, "chen")
    assert failed.status_code == 200 and "Check your mail" in failed.text
    assert "sign-in mail for chen failed" in caplog.text
    with Session(rt.engine) as session:
        [row] = session.exec(select(SigninRequest)).all()
        assert row.person == "chen" and row.used_at is not None  # withdrawn
    smtp_server.fail_with(None)
    assert enter(browser, ticket, "12345678").status_code == 403
    assert sessions(rt) == 0
