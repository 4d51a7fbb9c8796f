"""The callback's rules on a real database, without the engine: who a level names, who may
record it, what an outcome or a lapse starts, the triggers written with it, and the report's
counts (services/callbacks.py, reports/callbacks.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from itilflow import clock
from itilflow.models import (
    FlowTrigger,
    Incident,
    IncidentCreate,
    get_timeline,
    list_callbacks,
    session_scope,
)
from itilflow.policies import CallbackLevel
from itilflow.reports import compute_report, render_html
from itilflow.services import callbacks, incidents, surveys
from itilflow.services.principals import Principal, bootstrap_admin, expand_roles
from itilflow.tasks.incident.check_callbacks import check_callbacks

MONDAY_MORNING = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def person(name: str, *roles: str) -> Principal:
    return Principal(name=name, kind="person", roles=expand_roles(set(roles)))


@pytest.fixture
def answered(rt) -> int:
    """A resolved incident of liu's (applications, led by chen) whose reporter answered 1."""
    clock.freeze(MONDAY_MORNING)
    with session_scope(rt.engine) as session:
        incident, _ = incidents.open_incident(
            session=session,
            new=IncidentCreate(title="Slow checkout", priority="P3", reporter_email="o@x.org"),
            policies=rt.policies,
            actor="test",
        )
        incident.assignee, incident.group_name = "liu", "applications"
        session.add(incident)
        session.flush()
        assert surveys.record_answer(
            session, incident, score=2, comment="slow", policies=rt.policies
        )
        assert incident.id is not None
        return incident.id


def timeline(rt, incident_id: int) -> list[str]:
    with Session(rt.engine) as session:
        entries = get_timeline(session=session, incident_id=incident_id)
        return [e.kind for e in entries if e.kind.startswith("callback")]


def triggers(rt, incident_id: int) -> dict[str, FlowTrigger]:
    with Session(rt.engine) as session:
        rows = session.exec(select(FlowTrigger).where(FlowTrigger.incident_id == incident_id))
        return {t.key: t for t in rows if t.kind == "callback"}


def record(rt, incident_id: int, level: int, outcome: str, actor: str = "liu") -> None:
    with session_scope(rt.engine) as session:
        incident = session.get(Incident, incident_id)
        callbacks.record_outcome(
            session, incident, level, outcome=outcome, note="", actor=actor, policies=rt.policies
        )


def lapse(rt, incident_id: int, level: int) -> bool:
    with session_scope(rt.engine) as session:
        incident = session.get(Incident, incident_id)
        return callbacks.lapse_level(session, incident, level, policies=rt.policies)


def test_an_unsatisfied_answer_starts_level_one_with_its_call_and_deadline(rt, answered):
    with Session(rt.engine) as session:
        [level] = list_callbacks(session=session, incident_id=answered)
        assert session.exec(select(Incident).where(Incident.parent_id == answered)).all() == []
    assert (level.level, level.who, level.assignee) == (1, "engineer", "liu")
    due = triggers(rt, answered)
    assert due["callback:1:call"].due_at == MONDAY_MORNING
    assert due["callback:1:due"].due_at == level.due_at == MONDAY_MORNING + timedelta(days=1)
    assert timeline(rt, answered) == ["callback_started", "callback_level_started"]


def test_a_satisfied_answer_starts_nothing(rt):
    with session_scope(rt.engine) as session:
        incident, _ = incidents.open_incident(
            session=session, new=IncidentCreate(title="Fine"), policies=rt.policies, actor="t"
        )
        surveys.record_answer(session, incident, score=3, comment="", policies=rt.policies)
        assert list_callbacks(session=session, incident_id=incident.id or 0) == []


def test_satisfied_ends_the_callback_and_its_deadline(rt, answered):
    record(rt, answered, 1, "satisfied")
    assert triggers(rt, answered)["callback:1:due"].cancelled_at is not None
    assert timeline(rt, answered)[-2:] == ["callback_outcome", "callback_resolved"]
    with pytest.raises(callbacks.CallbackRefused, match="recorded as satisfied already"):
        record(rt, answered, 1, "not_satisfied")
    assert not lapse(rt, answered, 1), "a recorded level does not lapse"


def test_unreachable_and_lapses_climb_to_unresolved(rt, answered):
    record(rt, answered, 1, "unreachable")
    assert lapse(rt, answered, 2)
    assert not lapse(rt, answered, 2), "a second run of the same deadline changes nothing"
    with pytest.raises(callbacks.CallbackRefused, match="lapsed already"):
        record(rt, answered, 2, "satisfied", actor="chen")
    record(rt, answered, 3, "not_satisfied", actor="sun")
    with Session(rt.engine) as session:
        rows = list_callbacks(session=session, incident_id=answered)
    assert [(r.assignee, r.outcome, r.late) for r in rows] == [
        ("liu", "unreachable", False),
        ("chen", None, True),
        ("sun", "not_satisfied", False),
    ]
    assert timeline(rt, answered)[-1] == "callback_unresolved"
    assert len(triggers(rt, answered)) == 6  # a call and a deadline per level, no more


def test_refused_outcomes(rt, answered):
    with pytest.raises(callbacks.CallbackRefused, match="expected one of satisfied"):
        record(rt, answered, 1, "happy")
    with pytest.raises(callbacks.CallbackRefused, match="has no callback level 4"):
        record(rt, answered, 4, "satisfied")


def test_who_may_record(rt, answered):
    with Session(rt.engine) as session:
        [level] = list_callbacks(session=session, incident_id=answered)
        may = lambda who: callbacks.may_record(session, who, level)  # noqa: E731
        assert may(person("liu", "agent"))
        assert may(person("chen", "group_lead"))  # leads applications, liu's group
        assert may(bootstrap_admin())
        assert may(person("zhou", "admin"))
        assert not may(person("wang", "group_lead"))  # leads hardware
        assert not may(person("liu", "reporter")), "the agent role is needed too"
        assert not may(Principal(name="liu", kind="integration", roles=expand_roles({"agent"})))


def test_whom_a_level_names(rt):
    with session_scope(rt.engine) as session:
        incident = Incident(title="x", group_name="dba", assignee=None)
        named = lambda **level: callbacks.level_person(  # noqa: E731
            session, incident, CallbackLevel(within="8h", **level)
        )
        assert named(who="engineer") == "sun", "nobody assigned: the group's lead"
        assert named(who="manager") == "zhou"
        assert named(who="expert", person="wu") == "wu"
        assert named(who="expert", group="network") == "zhao"
        incident.assignee = "liu"
        assert named(who="engineer") == "liu"


def test_the_report_counts_by_the_month_the_callback_started(rt, answered):
    record(rt, answered, 1, "not_satisfied")
    clock.freeze(MONDAY_MORNING + timedelta(days=10))  # December
    report = compute_report(rt.engine, rt.policies, period="2026-11", now=clock.now())
    november = report.section("callbacks").data.current
    assert (november.started, november.under_way, november.resolved_at) == (1, 1, {})
    # Known as of a moment before level 1 was recorded: still level 1, not late yet.
    early = compute_report(
        rt.engine, rt.policies, period="2026-11", now=MONDAY_MORNING + timedelta(hours=1)
    )
    assert early.section("callbacks").data.current.late_levels == 0
    assert lapse(rt, answered, 2) and lapse(rt, answered, 3)
    report = compute_report(rt.engine, rt.policies, period="2026-11", now=clock.now())
    november = report.section("callbacks").data.current
    assert (november.unresolved, november.under_way, november.late_levels) == (1, 0, 2)
    english, chinese = render_html(report, "en"), render_html(report, "zh_CN")
    section = english[english.index('<section id="callbacks">') :]
    assert "Survey callbacks" in section and "Unresolved after the last level" in section
    assert "满意度回访" in chinese and "最后一级后仍未解决" in chinese
    december = compute_report(rt.engine, rt.policies, period="2026-12", now=clock.now())
    assert december.section("callbacks").data.current.started == 0


def test_a_call_is_mailed_only_while_its_level_is_open(rt, answered):
    call = triggers(rt, answered)["callback:1:call"].id
    [request] = check_callbacks.fn([call])
    assert request["audience"] == ["person:liu"] and request["key"] == "callback:1"
    assert (request["extra"]["level"], request["extra"]["levels"]) == (1, 3)
    assert request["extra"]["previous"] is None
    record(rt, answered, 1, "satisfied")
    assert check_callbacks.fn([call]) == [], "answered before its mail went out: no mail"


def test_the_api_refuses_a_level_out_of_range(client, answered):
    for level in ("0", "-1", str(2**70), "x"):
        answer = client.post(
            f"/api/incidents/{answered}/callbacks/{level}", json={"outcome": "satisfied"}
        )
        assert answer.status_code == 422, (level, answer.text)
    missing = client.post(f"/api/incidents/{answered}/callbacks/7", json={"outcome": "satisfied"})
    assert missing.status_code == 404
    assert client.post(f"/api/incidents/{answered}/callbacks/1", json={}).status_code == 422
