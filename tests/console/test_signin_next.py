"""Signing in from a console page comes back to it, by the mailed code and by the mailed link."""

from __future__ import annotations

import re

from tests.console.conftest import grant, open_incident
from tests.support.csrf import csrf_of

LINK = re.compile(r"(/signin/link/[\w.\-]+(?:\?next=\S+)?)\r?$", re.MULTILINE)


def test_the_mailed_link_returns_to_the_incident_page(browser, api, rt, smtp_server):
    number = open_incident(api)
    grant(rt, "chen", "agent")
    sent = browser.get(f"/incidents/{number}")
    assert sent.headers["location"] == f"/signin?next=%2Fincidents%2F{number}"
    form = browser.get(sent.headers["location"]).text
    assert f'name="next" value="/incidents/{number}"' in form
    browser.post(
        "/signin", data={"name": "chen", "next": f"/incidents/{number}", "csrf": csrf_of(form)}
    )
    [mail] = smtp_server.wait_for(1)
    link = LINK.search(mail.message.get_body(("plain",)).get_content()).group(1)
    assert link.endswith(f"?next=/incidents/{number}")
    shown = browser.get(link).text  # a GET signs nobody in: the page has the button
    assert f'name="next" value="/incidents/{number}"' in shown
    signed = browser.post(
        link.split("?")[0], data={"csrf": csrf_of(shown), "next": f"/incidents/{number}"}
    )
    assert signed.status_code == 303 and signed.headers["location"] == f"/incidents/{number}"
    assert browser.get(f"/incidents/{number}").status_code == 200


def test_a_link_cannot_send_anywhere_else(browser, api, rt, smtp_server):
    grant(rt, "chen", "agent")
    form = browser.get("/signin?next=https://evil.example/").text
    assert 'name="next" value="/signin"' in form
    browser.post("/signin", data={"name": "chen", "next": "//evil.example", "csrf": csrf_of(form)})
    [mail] = smtp_server.wait_for(1)
    link = LINK.search(mail.message.get_body(("plain",)).get_content()).group(1)
    assert "?next=" not in link
    shown = browser.get(f"{link}?next=//evil.example").text
    signed = browser.post(link, data={"csrf": csrf_of(shown), "next": "https://evil.example"})
    assert signed.headers["location"] == "/signin"
