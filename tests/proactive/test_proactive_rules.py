"""The proactive notice's life without the engine: opened inside the horizon, one per CI and
kind, updated in place, superseded when its window passes undecided, expired when the moment
comes, closed as not needed on recovery; and who may accept or decline it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from itilflow import clock
from itilflow.models import CheckResult, ProactiveNotice, get_proactive_timeline, session_scope
from itilflow.policies.inspection import TlsCheck
from itilflow.policies.proactive import Prediction
from itilflow.services import changes
from itilflow.services.directory import Record, save_records
from itilflow.services.proactive import Observation, observation_of, observe
from itilflow.services.proactive_decisions import (
    Decider,
    NotAllowedToDecide,
    NotOpen,
    accept,
    decline,
)


@pytest.fixture
def cis(rt) -> None:
    with session_scope(rt.engine) as session:
        save_records(
            session,
            [
                Record(
                    "cis",
                    {
                        "name": "db-1",
                        "kind": "database",
                        "criticality": "medium",
                        "owner_group": "dba",
                        "customer_contact": "owner@example.com",
                        "customer_language": "zh_CN",
                    },
                ),
                Record(
                    "cis",
                    {"name": "app-1", "kind": "server", "owner_group": "applications"},
                ),
            ],
        )


def disk(hours: float | None, *, target: str = "node-1", answered: bool = True) -> Observation:
    now = clock.now()
    prediction = (
        None
        if hours is None
        else Prediction("disk_fill", "/srv", now + timedelta(hours=hours), {"item": "/srv"})
    )
    return Observation("db-1", "disk_fill", target, "node.filesystem_fill", prediction, answered)


def seen(rt, observation: Observation) -> list[tuple[int, str]]:
    with session_scope(rt.engine) as session:
        events = observe(session, rt.policies, observation, now=clock.now(), run_id=None)
    return [(e.proactive_id, e.event) for e in events]


def load(rt, notice_id: int) -> ProactiveNotice:
    with Session(rt.engine) as session:
        notice = session.get(ProactiveNotice, notice_id)
        assert notice is not None
        return notice


def test_one_notice_per_ci_and_kind_updated_in_place_then_not_needed(rt, cis) -> None:
    assert seen(rt, disk(24 * 8)) == []  # beyond the 7-day horizon
    [(first, event)] = seen(rt, disk(30))
    assert event == "proposed"
    notice = load(rt, first)
    assert (notice.owner_group, notice.customer_contact, notice.customer_language) == (
        "dba",
        "owner@example.com",
        "zh_CN",
    )
    assert notice.parameters == {"host": "db-1", "gigabytes": 20}  # db-1 has no `volume`
    assert seen(rt, disk(31)) == []  # moved an hour: kept quietly
    assert seen(rt, disk(50)) == [(first, "updated")]
    assert load(rt, first).predicted_at > notice.predicted_at
    # Another check of the same CI foreseeing it later does not take the notice over.
    assert seen(rt, disk(70, target="node-1-prom")) == []
    assert seen(rt, disk(None, answered=False)) == []  # no answer says nothing
    assert seen(rt, disk(None)) == [(first, "not_needed")]
    assert load(rt, first).cleared_at is not None
    [(second, event)] = seen(rt, disk(20))
    assert event == "proposed" and second != first


def test_the_database_keeps_one_open_notice_per_ci_and_kind(rt, cis) -> None:
    [(first, _)] = seen(rt, disk(30))
    copy = load(rt, first).model_dump(exclude={"id"})
    with pytest.raises(IntegrityError), session_scope(rt.engine) as session:
        session.add(ProactiveNotice(**copy))


def test_a_lapsed_window_is_superseded_and_a_passed_moment_expires(rt, cis) -> None:
    [(first, _)] = seen(rt, disk(24 * 5))
    clock.advance(load(rt, first).proposed_start - clock.now() + timedelta(minutes=1))
    events = seen(rt, disk(24 * 4))
    assert events[0] == (first, "superseded") and events[1][1] == "proposed"
    renewed = events[1][0]
    assert load(rt, renewed).proposed_start > clock.now()
    assert seen(rt, disk(-1)) == [(renewed, "expired")]


def test_a_decided_notice_keeps_its_decision_when_cleared(rt, cis) -> None:
    [(first, _)] = seen(rt, disk(30))
    sun = Decider("sun", frozenset({"agent", "reporter"}), frozenset({"dba"}))
    with session_scope(rt.engine) as session:
        decline(session, session.get(ProactiveNotice, first), sun, reason="data moves tonight")
    assert seen(rt, disk(None)) == [(first, "cleared")]
    notice = load(rt, first)
    assert (notice.status, notice.reason) == ("declined", "data moves tonight")
    with Session(rt.engine) as session:
        kinds = [e.kind for e in get_proactive_timeline(session=session, proactive_id=first)]
    assert kinds == ["proposed", "declined", "cleared"]


def test_who_may_accept_and_what_the_template_still_needs(rt, cis) -> None:
    [(first, _)] = seen(rt, disk(30))
    chen = Decider("chen", frozenset({"agent", "reporter"}), frozenset({"applications"}))
    sun = Decider("sun", frozenset({"agent", "reporter"}), frozenset({"dba"}))
    dba_reporter = Decider("ma", frozenset({"reporter"}), frozenset({"dba"}))
    with session_scope(rt.engine) as session:
        notice = session.get(ProactiveNotice, first)
        for someone in (chen, dba_reporter):
            with pytest.raises(NotAllowedToDecide, match="owner group \\(dba\\)"):
                accept(session, rt.policies, notice, someone)
        with pytest.raises(changes.StandardChangeRefused, match="volume: required"):
            accept(session, rt.policies, notice, sun)
        change = accept(session, rt.policies, notice, sun, parameters={"volume": "vg0/data"})
        assert change.planned_start == notice.proposed_start
        assert notice.status == "accepted" and notice.change_id == change.id
        with pytest.raises(NotOpen):
            decline(session, notice, sun, reason="too late")


def test_the_template_decides_who_may_request_the_change(rt, cis) -> None:
    # applications owns app-1, but add-disk-space is for change managers, hardware and dba.
    observation = Observation(
        "app-1",
        "disk_fill",
        "node-9",
        "node.filesystem_fill",
        Prediction("disk_fill", "/", clock.now() + timedelta(days=2), {"item": "/"}),
        True,
    )
    [(notice_id, _)] = seen(rt, observation)
    chen = Decider("chen", frozenset({"agent", "reporter"}), frozenset({"applications"}))
    with session_scope(rt.engine) as session:
        notice = session.get(ProactiveNotice, notice_id)
        with pytest.raises(changes.NotAllowedToRequest):
            accept(session, rt.policies, notice, chen, parameters={"volume": "vg0/root"})
    assert load(rt, notice_id).status == "proposed"


def test_a_tls_result_without_an_answer_is_no_recovery() -> None:
    check = TlsCheck(type="tls", host="10.0.0.5", port=8443, server_name="shop.example.com")
    result = CheckResult(
        run_id=1, target="shop", check_name="tls", check_type="tls", status="error", value=None
    )
    observed = observation_of(result, "shop-web", check)
    assert observed is not None and not observed.answered and observed.prediction is None
    result.status, result.value = "warning", 12.0
    observed = observation_of(result, "shop-web", check)
    assert observed is not None and observed.prediction is not None
    assert observed.prediction.values["server_name"] == "shop.example.com"
    assert observed.prediction.item == "10.0.0.5:8443"
