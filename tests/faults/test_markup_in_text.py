"""HTML and script in what people type (incident titles, descriptions, comments and resolution
notes, survey comments, change titles and CIs, problem titles from alert summaries, categories
and targets in the monthly report) comes out as text everywhere it is shown: escaped in the
mails' HTML part (sent through a real SMTP server), on the gateway's survey and approval pages,
in the monthly report; in chat (apprise to a real HTTP endpoint) the JSON carries the words
with look-alike brackets, neither markup nor HTML entities, and apprise escapes them itself for
services that take HTML."""

from __future__ import annotations

import re
from email.message import EmailMessage
from typing import Any

from markupsafe import escape
from sqlmodel import select

from itilflow.models import (
    ChangeStatus,
    CheckResult,
    Incident,
    list_callbacks,
    session_scope,
    start_inspection_run,
)
from itilflow.notifications import RenderedMessage, asend_chat, asend_email
from itilflow.notifications.plans import request as notification_request
from itilflow.reports import compute_report, render_html, render_mail, render_markdown
from itilflow.services import changes, problems
from itilflow.tasks.change.request_approvals import approval_step
from itilflow.tasks.incident.survey_links import survey_links
from itilflow.tasks.notify.plan_notifications import plan_notifications
from itilflow.tasks.problem.plan_problem_notifications import plan_problem_notifications
from tests.reports.dataset import NOW, make_incident, utc
from tests.support.csrf import csrf_of

from .gateway_support import PLAN

MARKUP = '<script>alert("x")</script><img src=x onerror=alert(1)>'
TITLE = f'Checkout down {MARKUP} & "quoted" <!channel>'
DESCRIPTION = f"Since 09:00\n</td></tr>{MARKUP}"
NOTE = '</div><a href="javascript:alert(2)">restarted</a><script>alert(3)</script>'
SURVEY_COMMENT = '<iframe src="https://evil.example/"></iframe><b>slow</b>'
CI = "<details open ontoggle=alert(4)>db-01"
CATEGORY = "<script>c</script>"
TARGET = "<img src=y onerror=alert(5)>"
# Any of these in an HTML output is markup that came from the data.
TAGS = re.compile(r'<(script|img|iframe|details|b>slow|!channel|a href="javascript)', re.IGNORECASE)


def html_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None, "the mail has no HTML part"
    return str(part.get_content())


def text_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "the mail has no text part"
    return str(part.get_content())


async def send(rt: Any, message: dict[str, str], to: list[str], tags: list[str]) -> None:
    """What the delivery pipeline does with a plan's message, on each channel."""
    await asend_email(RenderedMessage(**message), to=to, settings=rt.mail)
    await asend_chat(
        title=message["chat_title"],
        body=message["chat_body"],
        tags=tags,
        config=rt.settings.apprise_config,
    )


def assert_shown_as_text(html: str, *values: str) -> None:
    """No markup from the data, and each value present, escaped (as jinja escapes)."""
    html = html.replace("\r\n", "\n")  # a mail part may come back with CRLF line ends
    found = TAGS.search(html)
    assert found is None, f"markup from the data: ...{html[max(0, found.start() - 80) :][:200]}"
    for value in values:
        assert str(escape(value)) in html, f"{value!r} not shown (escaped) in the HTML"


def defused(value: str) -> str:
    return value.replace("<", "‹").replace(">", "›")


def assert_chat_carries_text(payload: dict[str, Any], *values: str) -> None:
    """apprise's json:// body: the words, brackets as look-alikes, no entities, no markup."""
    everything = f"{payload['title']}\n{payload['message']}"
    assert "<" not in everything and ">" not in everything, everything
    assert "&lt;" not in everything and "&amp;" not in everything, everything
    for value in values:
        one_line = " ".join(defused(value).split())
        assert one_line in " ".join(everything.split()), (value, everything)


async def test_incident_text_is_escaped_in_mail_chat_and_the_survey_page(
    client: Any, rt: Any, smtp_server: Any, http_sink: Any, fault_figures: Any
) -> None:
    opened = client.post(
        "/api/incidents",
        json={
            "title": TITLE,
            "description": DESCRIPTION,
            "priority": "P1",
            "ci": CI,
            "reporter_email": "owner@example.com",
        },
    )
    assert opened.status_code == 201, opened.text
    number, incident_id = opened.json()["number"], opened.json()["id"]
    for action in ("comment", "resolve"):
        done = client.post(f"/api/incidents/{number}/{action}", json={"note": NOTE})
        assert done.status_code == 200, done.text
    timeline = client.get(f"/api/incidents/{number}/timeline").json()
    assert [e["message"] for e in timeline if e["kind"] == "commented"] == [NOTE]  # verbatim

    # The survey page shows the title as text; the reporter's comment starts a callback whose
    # mail carries it (the callback replaced the follow-up incident; the follow-up's own mail
    # template is still checked below, on the incident).
    url = survey_links.fn([incident_id])[incident_id]
    assert url is not None
    survey = client.get(url.removeprefix(rt.settings.public_url))
    assert survey.status_code == 200
    assert_shown_as_text(survey.text, TITLE)
    answered = client.post(
        url.removeprefix(rt.settings.public_url),
        data={"score": "1", "comment": SURVEY_COMMENT, "csrf": csrf_of(survey.text)},
    )
    assert answered.status_code == 200 and "<iframe" not in answered.text
    with session_scope(rt.engine) as session:
        assert session.exec(select(Incident).where(Incident.parent_id == incident_id)).all() == []
        assert [c.level for c in list_callbacks(session=session, incident_id=incident_id)] == [1]
    callback = {"level": 1, "levels": 3, "due_at": "tomorrow", "score": 1, "previous": None}

    plans = [
        ("opened", incident_id, "incident_opened", {}, [TITLE, DESCRIPTION, CI]),
        ("resolved", incident_id, "incident_resolved", {}, [TITLE, NOTE]),
        ("survey", incident_id, "survey_request", {"survey_url": url}, [TITLE]),
        (
            "callback",
            incident_id,
            "callback_request",
            {**callback, "comment": SURVEY_COMMENT},
            [TITLE, SURVEY_COMMENT],
        ),
        (
            "follow-up note",
            incident_id,
            "follow_up_opened",
            {"score": 1, "comment": SURVEY_COMMENT},
            [SURVEY_COMMENT],
        ),
    ]
    sink_urls = {
        "html": http_sink.apprise_url("/as-html") + "?format=html",
        "markdown": http_sink.apprise_url("/as-markdown") + "?format=markdown",
    }
    for key, target, template, extra, values in plans:
        wanted = notification_request(
            target, template, audience=["reporter", "on_call"], key=key, actor="test", extra=extra
        )
        (plan,) = plan_notifications.fn([wanted])
        assert plan["emails"] == ["owner@example.com"] and plan["tags"], plan
        message = plan["message"]
        sent_before = len(smtp_server.mails)
        await send(rt, message, plan["emails"], plan["tags"])
        # What apprise makes of the same text for services that take HTML or markdown.
        await asend_chat(
            title=message["chat_title"],
            body=message["chat_body"],
            tags=(),
            config=None,
            urls=list(sink_urls.values()),
        )
        mail = smtp_server.wait_for(sent_before + 1)[-1].message
        assert_shown_as_text(html_part(mail), *values)
        if target == incident_id:  # the subject is a header: one line, the words as typed
            assert " ".join(TITLE.split()) in str(mail["Subject"])
        for value in values:  # the text part carries the words as they were typed
            assert " ".join(value.split())[:40] in " ".join(text_part(mail).split())
    chats = http_sink.wait_for(3 * len(plans))
    plain = [r.json for r in chats if r.path == "/notify"]
    assert len(plain) == len(plans)
    for payload, (_, _, _, _, values) in zip(plain, plans, strict=True):
        assert_chat_carries_text(payload, *values)
    for request in chats:
        if request.path.startswith("/as-html"):
            # apprise escapes the text itself and adds line breaks: its only tags.
            body = request.json["message"]
            assert "<" not in body.replace("<br/>", ""), body
        if request.path.startswith("/as-markdown"):
            assert "<" not in request.json["message"], request.json["message"]
    fault_figures(
        "markup in incident text",
        mails_escaped=len(plans),
        chat_posts_as_text=len(chats),
        pages_escaped=1,
        templates=len({template for _, _, template, _, _ in plans}),
    )


async def test_change_text_is_escaped_in_the_approval_mail_and_page(
    client: Any, rt: Any, smtp_server: Any, fault_figures: Any
) -> None:
    submitted = client.post("/api/changes", json={"title": TITLE, "cis": [CI], "plan": PLAN})
    assert submitted.status_code == 201, submitted.text
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, submitted.json()["id"])
        change.status = ChangeStatus.awaiting_approval
        change.risk_level = "low"
        change.risk_reasons = [f"+1 for CI {CI}"]
        session.add(change)
        version = change.version
    step = approval_step.fn(submitted.json()["id"], version)
    assert step.outcome == "pending", step
    for plan in step.mails:
        await asend_email(RenderedMessage(**plan["message"]), to=plan["emails"], settings=rt.mail)
    mails = smtp_server.wait_for(1)
    pages = 0
    for mail in mails:
        assert_shown_as_text(html_part(mail.message), TITLE, CI)
        link = re.search(r"/approvals/[\w.\-]+", text_part(mail.message))
        assert link is not None
        page = client.get(link[0])
        assert page.status_code == 200, page.text
        assert_shown_as_text(page.text, TITLE, CI, f"+1 for CI {CI}")
        pages += 1
    fault_figures("markup in change text", mails_escaped=len(mails), pages_escaped=pages)


async def test_problem_titles_from_alert_summaries_are_escaped(
    client: Any, rt: Any, smtp_server: Any, http_sink: Any, fault_figures: Any
) -> None:
    opened = client.post("/api/incidents", json={"title": TITLE, "impact": "low"})
    incident_id = opened.json()["id"]
    with session_scope(rt.engine) as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        problem, entry_id = problems.open_problem(
            session,
            problems.Cluster(
                kind="fingerprint",
                value="d4177250bc20cc9f",
                count=3,
                first_at=incident.opened_at,
                last_at=incident.opened_at,
                incident_ids=[incident_id],
                category=None,
                latest_title=TITLE,
                min_incidents=3,
                window="7d",
            ),
            policies=rt.policies,
        )
        problems.link_incidents(session, problem, [incident_id], actor="test")
        assert problem.id is not None
        event = problems.ProblemEvent(problem_id=problem.id, event="opened", entry_id=entry_id)
    (plan,) = plan_problem_notifications.fn([event])
    assert TITLE in problem.title
    await send(rt, plan["message"], ["owner@example.com"], plan["tags"])
    [mail] = smtp_server.wait_for(1)
    assert_shown_as_text(html_part(mail.message), problem.title, TITLE)
    [chat] = http_sink.wait_for(1)
    assert_chat_carries_text(chat.json, problem.title)
    fault_figures("markup in problem text", mails_escaped=1, chat_posts_as_text=1)


def test_the_monthly_report_shows_categories_cis_and_targets_as_text(
    rt: Any, fault_figures: Any
) -> None:
    make_incident(
        rt.engine, opened=utc(2026, 10, 3), priority="P1", category=CATEGORY, ci=CI, title=TITLE
    )
    with session_scope(rt.engine) as session:
        run = start_inspection_run(session=session, group="web")
        assert run.id is not None
        session.add(
            CheckResult(
                run_id=run.id,
                target=TARGET,
                check_name="http",
                check_type="http",
                status="critical",
                message=NOTE,
                at=utc(2026, 10, 5),
            )
        )
    report = compute_report(rt.engine, rt.policies, period="2026-10", now=NOW)
    for language in ("en", "zh_CN"):
        assert_shown_as_text(render_html(report, language), CATEGORY, CI, TARGET)
        mail = render_mail(report, language, {"pdf": "/reports/2026-10.pdf"})
        assert TAGS.search(mail.html) is None
        assert "<" not in mail.chat_body
        markdown = render_markdown(report, language, {"pdf": "/reports/2026-10.pdf"})
        assert "<script" not in markdown and "<img" not in markdown
    fault_figures("markup in the monthly report", languages=2, outputs_escaped=2 * 4)
