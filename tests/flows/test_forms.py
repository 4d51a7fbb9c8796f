"""The Prefect UI's forms open and work incidents through the one incident shape, as the API."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from itilflow.flows.forms import report_incident, update_incident
from itilflow.models import FlowTrigger, Incident, get_timeline

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_report_incident_stores_what_the_form_was_given(rt) -> None:
    number = report_incident(
        title="Printer on floor 3 jams",
        description="every second page",
        impact="low",
        urgency="medium",
        category="hardware",
        ci="printer-3",
        reporter_email="li@example.org",
        actor="lin",
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
        assert [(e.kind, e.actor) for e in opened] == [("opened", "lin")]
        # Opened like any other: the runner starts its flow from the stored trigger.
        trigger = session.exec(select(FlowTrigger)).one()
        assert (trigger.incident_id, trigger.kind) == (incident.id, "open")


def test_report_incident_refuses_an_impact_the_policy_does_not_know(rt) -> None:
    with pytest.raises(ValueError, match="unknown impact"):
        report_incident(title="Disk full", impact="enormous")
    with Session(rt.engine) as session:
        assert session.exec(select(Incident)).first() is None


def test_update_incident_acts_as_the_api_does(rt) -> None:
    number = report_incident(title="VPN down")
    update_incident(number, "acknowledge", actor="lin")
    with Session(rt.engine) as session:
        incident = session.exec(select(Incident)).one()
        assert incident.status == "acknowledged"
