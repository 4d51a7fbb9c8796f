"""Every incident link in mails and chat opens the incident's page in the console (the JSON
stays under /api/ for tools)."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from itilflow.models import Incident
from itilflow.notifications import render_message
from itilflow.notifications.incident_context import incident_context
from itilflow.notifications.messages import CHANGE_TEMPLATE_EXTRAS, TEMPLATE_EXTRAS
from tests.console.conftest import open_incident, sign_in
from tests.support.notifications import make_context

INCIDENT_TEMPLATES = sorted(set(TEMPLATE_EXTRAS) - set(CHANGE_TEMPLATE_EXTRAS))


@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_every_incident_message_links_to_the_incident_page(browser, api, rt, language):
    number = open_incident(api, title="Checkout down")
    with Session(rt.engine) as session:
        row = session.get(Incident, int(number[4:]))
        context = incident_context(session, row, policies=rt.policies, public_url="https://desk")
    page = f"https://desk/incidents/{number}"
    assert context["url"] == page
    linked = set()
    for template in INCIDENT_TEMPLATES:
        message = render_message(template, language, make_context(template, incident=context))
        for part in (message.text, message.html, message.chat_body):
            assert "/api/" not in part, template
        if page in message.text and page in message.html:
            linked.add(template)
    # The survey mail links its survey, not the incident page; every other one links the page.
    assert linked == set(INCIDENT_TEMPLATES) - {"survey_request"}
    sign_in(browser, rt, "chen", "agent")
    opened = browser.get(page.removeprefix("https://desk"))
    assert opened.status_code == 200 and "Checkout down" in opened.text
    # The API keeps its JSON (and its url field) for tools.
    assert api.get(f"/api/incidents/{number}").json()["url"].endswith(f"/api/incidents/{row.id}")
