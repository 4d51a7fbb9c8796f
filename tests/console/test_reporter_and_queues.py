"""The reporter's own view, the queues, hostile text on every page, and the catalogue."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from itilflow.gateway.console.catalogue import MESSAGES_DIR, messages
from itilflow.gateway.console.incident_view import ACTION_RULES, REPLY
from itilflow.gateway.console.queues import QUEUES
from itilflow.models import IncidentStatus, add_timeline, session_scope
from tests.console.conftest import open_incident, set_fields, sign_in
from tests.console.test_incident_pages import act, timeline
from tests.support.csrf import csrf_of

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
PAGES = Path(__file__).resolve().parents[2] / "gateway" / "pages"


def test_a_reporter_sees_status_and_public_comments_and_replies(browser, api, rt):
    number = open_incident(api, reporter_email="Chen@Example.com")
    with session_scope(rt.engine) as session:  # an agent's notes, one of them for the reporter
        for note, visibility in (("internal: db password reset", "internal"), ("on it", "public")):
            add_timeline(
                session=session,
                incident_id=int(number[4:]),
                kind="commented",
                actor="lin",
                message=note,
                data={"visibility": visibility},
            )
    sign_in(browser, rt, "chen", "reporter")
    page = browser.get(f"/incidents/{number}")
    assert page.status_code == 200 and "Payment module returns 500" in page.text
    assert "on it" in page.text and "db password reset" not in page.text
    assert 'id="sla"' not in page.text and 'value="acknowledge"' not in page.text
    assert act(browser, number, "reply", note="still broken here").status_code == 303
    assert timeline(rt, number)[-1] == (
        "commented",
        "chen",
        "still broken here",
        {"visibility": "public"},
    )
    # Resolved: the survey link is offered.
    set_fields(rt, number, status="resolved")
    assert "/surveys/" in browser.get(f"/incidents/{number}").text
    # The reporter's queue is their own incidents.
    queue = browser.get("/incidents?queue=all")
    assert (
        queue.status_code == 200 and number in queue.text and 'data-count="mine"' not in queue.text
    )


def test_a_reporter_cannot_open_anothers_incident(browser, api, rt):
    theirs = open_incident(api, reporter_email="shop-owner@example.com", title="Other's outage")
    sign_in(browser, rt, "chen", "reporter")
    page = browser.get(f"/incidents/{theirs}")
    missing = browser.get("/incidents/INC-999999")
    # The same answer as a number that does not exist: nothing tells that it does.
    assert page.status_code == missing.status_code == 404
    assert "Other's outage" not in page.text
    assert browser.get(f"/incidents/{theirs}/live").status_code == 404
    token = csrf_of(browser.get("/incidents").text)
    for action in ("reply", "acknowledge"):
        data = {"action": action, "note": "mine now", "confirm": "yes", "csrf": token}
        assert browser.post(f"/incidents/{theirs}", data=data).status_code == 404
    assert len(timeline(rt, theirs)) == 1
    assert theirs not in browser.get("/incidents").text


def test_queues_count_filter_and_search(browser, api, rt):
    mine = open_incident(api, title="VPN drops every hour", priority="P2")
    group = open_incident(api, title="Printer jam", priority="P4")
    loose = open_incident(api, title="Mail delayed", priority="P3")
    set_fields(rt, mine, assignee="chen", group_name="applications", status="assigned")
    set_fields(rt, group, assignee="liu", group_name="applications", status="assigned")
    sign_in(browser, rt, "chen", "agent")
    counts = browser.get("/incidents?queue=mine").text
    found = dict(re.findall(r'data-count="(\w+)">(\d+)<', counts))
    assert found == {"mine": "1", "group": "2", "unassigned": "1", "breaching": "0", "all": "3"}
    assert mine in counts and group not in counts
    assert loose in browser.get("/incidents?queue=unassigned").text
    by_priority = browser.get("/incidents?queue=all&priority=P4").text
    assert group in by_priority and mine not in by_priority
    by_title = browser.get("/incidents?queue=all&q=vpn").text
    assert mine in by_title and group not in by_title
    by_number = browser.get(f"/incidents?queue=all&q={loose}").text
    assert loose in by_number and mine not in by_number
    assert mine not in browser.get("/incidents?queue=all&status=resolved").text
    # A P1 whose response is due within the hour is breaching soon.
    urgent = open_incident(api, title="Checkout down", priority="P1")
    sign_in(browser, rt, "lin", "group_lead")
    act(browser, urgent, "priority", priority="P2", note="sync the clocks")
    act(browser, urgent, "priority", priority="P1", note="back to P1")
    assert urgent in browser.get("/incidents?queue=breaching").text


def test_hostile_text_is_escaped_on_every_page(browser, api, rt):
    number = open_incident(
        api, title=HOSTILE, description=HOSTILE, ci="web-01", reporter_email="chen@example.com"
    )
    set_fields(rt, number, category=HOSTILE, assignee="chen", group_name="applications")
    with session_scope(rt.engine) as session:
        add_timeline(
            session=session,
            incident_id=int(number[4:]),
            kind="known_error_matched",
            actor=HOSTILE,
            message=HOSTILE,
            data={"known_error": {"problem": HOSTILE, "article": "KB-1", "workaround": HOSTILE}},
        )
    sign_in(browser, rt, "lin", "group_lead")
    page = browser.get(f"/incidents/{number}").text
    asked = browser.post(
        f"/incidents/{number}",
        data={"action": "comment", "note": HOSTILE, "csrf": csrf_of(page)},
    ).text
    refused = act(browser, number, "resolve", note="")
    act(browser, number, "comment", note=HOSTILE, visibility="public")
    shown = {
        "incident": browser.get(f"/incidents/{number}").text,
        "live": browser.get(f"/incidents/{number}/live").text,
        "confirmation": asked,
        "refusal": refused.text,
        "queue": browser.get("/incidents?queue=all&q=script").text,
        "search echo": browser.get(f"/incidents?queue=all&q={HOSTILE}").text,
    }
    browser.cookies.clear()
    sign_in(browser, rt, "chen", "reporter")  # the reporter's own view
    shown["reporter"] = browser.get(f"/incidents/{number}").text
    for name, html in shown.items():
        assert "<script>" not in html and "<img src=x" not in html, name
    assert "&lt;script&gt;" in shown["incident"] and "&lt;script&gt;" in shown["queue"]


def test_every_text_the_templates_name_is_in_the_catalogue_in_both_languages():
    english, chinese = messages("en"), messages("zh_CN")
    used = set()
    for template in PAGES.glob("*.html"):
        text = re.sub(r"\{#.*?#\}", "", template.read_text(), flags=re.DOTALL)
        used |= {
            key for key in re.findall(r'(?<![\w.])(?:t|ui)\("([\w.]+)"', text) if key[-1] != "."
        }
    # Keys the templates build from data: every status, action and queue.
    used |= {f"incidents.status.{status.value}" for status in IncidentStatus}
    used |= {f"incidents.actions.{action}" for action in (*ACTION_RULES, REPLY)}
    used |= {f"incidents.queue.{queue}" for queue in (*QUEUES, "reported")}
    assert used and used <= set(english), used - set(english)
    # Chinese has every English key (none falls back to English on a zh_CN page).
    for path in (MESSAGES_DIR / "en").glob("*.yaml"):
        ours = MESSAGES_DIR / "zh_CN" / path.name
        assert ours.exists(), ours
        assert yaml.safe_load(ours.read_text())
    own_chinese = {k for k, v in chinese.items() if v != english.get(k)}
    assert {k for k in english if k.startswith(("incidents.", "console."))} <= own_chinese


def test_the_layout_works_in_a_phone_sized_window_without_any_cdn(browser, rt):
    sign_in(browser, rt, "chen", "agent")
    page = browser.get("/incidents").text
    assert 'name="viewport" content="width=device-width' in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    policy = browser.get("/incidents").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "style=" not in page and "<script>" not in page  # nothing inline for the policy to stop
    css = browser.get("/static/console.css")
    assert css.status_code == 200 and "@media (max-width:600px)" in css.text
    assert browser.get("/static/console.js").status_code == 200


def test_a_page_rendered_without_the_consoles_values_still_gets_the_layout():
    """A page not behind the sign-in (render_page alone), with its area's texts as a mapping."""
    from itilflow.gateway.console.catalogue import texts
    from itilflow.gateway.html import _environment

    page = _environment().from_string(
        '{% extends "layout.html" %}{% block title %}{{ t.title }}{% endblock %}'
        "{% block content %}<h1>{{ t.title }}</h1>{% endblock %}"
    )
    html = page.render(t={"title": "<Plan>"})
    assert '<html lang="en">' in html and "<h1>&lt;Plan&gt;</h1>" in html
    assert "/static/console.css" in html and "signout" not in html
    assert texts("incidents", "zh_CN")["queue.title"] == "事件"
    assert texts("console", "en")["nav.mine"] == "Mine"
