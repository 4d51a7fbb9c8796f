"""The Prefect UI's forms (flows/forms.py), run on a real Prefect test server."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from sqlmodel import Session, select

from itilflow.flows.forms import report_incident
from itilflow.models import Incident

pytestmark = pytest.mark.usefixtures("prefect_server")

HOSTILE_TITLE = "Printer [click](javascript:alert(1)) ![x](http://evil.example/x.png) <b>x</b>"


async def test_the_report_form_opens_the_incident_and_its_artifact_shows_the_title_as_text(rt):
    number = report_incident(title=HOSTILE_TITLE, impact="low", urgency="low", category="hardware")

    with Session(rt.engine) as session:
        [stored] = [i for i in session.exec(select(Incident)) if i.number == number]
    assert stored.title == HOSTILE_TITLE  # kept as the reporter wrote it
    async with get_client() as client:
        artifact = await client.read_latest_artifacts(limit=50)
    [markdown] = [
        a.data for a in artifact if a.key == "reported-incident" and a.description == number
    ]
    assert markdown.startswith(f"Opened **{number}**: ")
    shown = markdown.removeprefix(f"Opened **{number}**: ")
    # Every markdown construct of the title is escaped: no link, image or HTML.
    for construct in ("](", "![", "<b>", "[click]"):
        assert construct not in shown, shown
    assert shown.replace("\\", "") == HOSTILE_TITLE
