"""The Prefect UI's forms (flows/forms.py), run on a real Prefect test server: they open and work
incidents through the one incident shape, as the API does."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.exceptions import ParameterTypeError
from sqlmodel import Session, select

from itilflow.flows.forms import report_incident, update_incident
from itilflow.models import FlowTrigger, Incident, get_timeline

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


def test_report_incident_stores_what_the_form_was_given(rt) -> None:
    number = report_incident(
        title="Printer on floor 3 jams",
        description="every second page",
        impact="low",
        urgency="medium",
        category="hardware",
        ci="printer-3",
        reporter_email="li@example.org",
    )
    with Session(rt.engine) as session:
        incident = session.exec(select(Incident)).one()
        assert incident.number == number
        assert (incident.title, incident.description) == (
            "Printer on floor 3 jams",
            "every second page",
        )
        assert (incident.impact, incident.urgency) == ("low", "medium")
        assert (incident.category, incident.ci_name) == ("hardware", "printer-3")
        assert incident.reporter_email == "li@example.org"
        assert incident.source == "prefect-ui"
        opened = get_timeline(session=session, incident_id=incident.id)
        # Prefect OSS has no users: the form's actor is whoever holds the server's credentials.
        assert [(e.kind, e.actor) for e in opened] == [("opened", "prefect-operator")]
        # Opened like any other: the runner starts its flow from the stored trigger.
        trigger = session.exec(select(FlowTrigger)).one()
        assert (trigger.incident_id, trigger.kind) == (incident.id, "open")


def test_report_incident_refuses_an_impact_the_policy_does_not_know(rt) -> None:
    # The impact is a choice of the policy's now (flows/form_choices.py): refused with the
    # parameters, before the incident's rules see it.
    with pytest.raises(ParameterTypeError, match="'high', 'medium' or 'low'"):
        report_incident(title="Disk full", impact="enormous")
    with Session(rt.engine) as session:
        assert session.exec(select(Incident)).first() is None


def test_update_incident_acts_as_the_api_does(rt) -> None:
    number = report_incident(title="VPN down")
    update_incident(number, "acknowledge")
    with Session(rt.engine) as session:
        incident = session.exec(select(Incident)).one()
        assert incident.status == "acknowledged"
