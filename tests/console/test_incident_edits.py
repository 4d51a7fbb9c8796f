"""The console's edits as rules (services/incident_edits.py): each refusal changes nothing."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from itilflow.models import Engineer, FlowTrigger, Incident, IncidentStatus, session_scope
from itilflow.services import incident_edits
from itilflow.services.incident_actions import ActionError
from tests.console.conftest import open_incident, set_fields
from tests.console.test_incident_pages import timeline


def edit(rt, number, function, **values):
    with session_scope(rt.engine) as session:
        row = session.get(Incident, int(number[4:]))
        function(session, row, actor="lin", policies=rt.policies, **values)


@pytest.mark.parametrize(
    ("function", "values", "status", "refusal"),
    [
        (incident_edits.reassign, {"assignee": "nobody", "note": ""}, "new", "no active person"),
        (incident_edits.reassign, {"assignee": "zhou", "note": ""}, "new", "no active person"),
        (incident_edits.reassign, {"assignee": "liu", "note": ""}, "resolved", "needs it open"),
        (incident_edits.change_priority, {"priority": "P9", "note": "x"}, "new", "unknown"),
        (incident_edits.change_priority, {"priority": "P1", "note": "x"}, "new", "P1 already"),
        (incident_edits.change_priority, {"priority": "P2", "note": " "}, "new", "needs a note"),
    ],
)
def test_refused_edits_change_nothing(api, rt, function, values, status, refusal):
    number = open_incident(api)
    set_fields(rt, number, status=IncidentStatus(status))
    with session_scope(rt.engine) as session:  # zhou leaves: no longer assignable
        zhou = session.get(Engineer, "zhou")
        zhou.active = False
        session.add(zhou)
    with pytest.raises(ActionError, match=refusal):
        edit(rt, number, function, **values)
    with Session(rt.engine) as session:
        row = session.get(Incident, int(number[4:]))
        assert (row.assignee, row.priority, row.status) == (None, "P1", status)
    assert len(timeline(rt, number)) == 1


def test_a_new_priority_moves_the_sla_timers(api, rt):
    number = open_incident(api, priority="P4")
    edit(rt, number, incident_edits.reassign, assignee="liu", note="")
    with Session(rt.engine) as session:
        before = {t.kind: t.due_at for t in session.exec(select(FlowTrigger)) if t.due_at}
    edit(rt, number, incident_edits.change_priority, priority="P1", note="shop down")
    with Session(rt.engine) as session:
        timers = [t for t in session.exec(select(FlowTrigger)) if t.kind == "response_due"]
    pending = [t for t in timers if t.pending]
    assert pending and all(t.priority_rank == 1 for t in pending)
    assert min(t.due_at for t in pending) < before["response_due"]
