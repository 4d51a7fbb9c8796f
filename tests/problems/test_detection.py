"""Detection over a generated history: the known clusters open problems, groups just below the
threshold or outside the window do not, and a second review changes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from itilflow.models import (
    Problem,
    ProblemIncident,
    ProblemStatus,
    get_problem_timeline,
    linked_incident_ids,
    session_scope,
)
from itilflow.services import problems
from tests.problems.history import NOW, add_incident, load_history, problem_for, review


def all_problems(engine) -> list[Problem]:
    with Session(engine) as session:
        return list(session.exec(select(Problem).order_by(Problem.id)))


def test_the_known_clusters_and_nothing_else(rt) -> None:
    groups = load_history(rt.engine)
    with Session(rt.engine) as session:
        clusters = problems.detect_clusters(session, rt.policies.problem, NOW)

    found = {(c.kind, c.value): c for c in clusters}
    assert set(found) == {
        ("ci", "shop-payment"),
        ("category", "network"),
        ("fingerprint", "fp-disk-erp"),
    }
    payment = found[("ci", "shop-payment")]
    assert payment.incident_ids == groups["payment"]  # not the survey follow-up
    assert payment.count == 3 and payment.category == "software"
    assert found[("category", "network")].incident_ids == sorted(groups["network"])[::-1]
    assert found[("fingerprint", "fp-disk-erp")].incident_ids == groups["disk"][::-1]
    assert found[("fingerprint", "fp-disk-erp")].category == "database"


def test_detection_is_one_aggregate_query_per_rule(rt) -> None:
    load_history(rt.engine)
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(rt.engine, "before_cursor_execute", record)
    try:
        with Session(rt.engine) as session:
            clusters = problems.detect_clusters(session, rt.policies.problem, NOW)
    finally:
        event.remove(rt.engine, "before_cursor_execute", record)
    grouped = [s for s in statements if "GROUP BY" in s and "HAVING count" in s]
    assert len(grouped) == 3
    # Besides: one query per cluster found for its members, never one per incident.
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == len(grouped) + len(clusters)


def test_problems_open_with_their_owner_and_incidents(rt) -> None:
    groups = load_history(rt.engine)
    events = review(rt.engine, rt.policies)

    assert [e.event for e in events] == ["opened"] * 3
    payment = problem_for(rt.engine, "ci", "shop-payment")
    assert payment.title == "Repeated incidents on shop-payment"
    assert (payment.owner, payment.owner_group) == ("chen", "applications")
    assert payment.status == ProblemStatus.open
    network = problem_for(rt.engine, "category", "network")
    assert (network.owner, network.owner_group) == ("zhao", "network")
    disk = problem_for(rt.engine, "fingerprint", "fp-disk-erp")
    assert disk.title == "Repeated alert: Disk on erp-db-01 almost full"
    assert (disk.owner, disk.owner_group) == ("sun", "dba")
    with Session(rt.engine) as session:
        assert linked_incident_ids(session=session, problem_id=payment.id) == groups["payment"]
        kinds = [e.kind for e in get_problem_timeline(session=session, problem_id=payment.id)]
    assert kinds == ["opened", "assigned", "incidents_linked"]


def test_a_second_review_opens_nothing_and_links_only_new_incidents(rt) -> None:
    groups = load_history(rt.engine)
    review(rt.engine, rt.policies)
    assert review(rt.engine, rt.policies) == []
    assert len(all_problems(rt.engine)) == 3

    with session_scope(rt.engine) as session:
        new = add_incident(
            session,
            days_ago=0.05,
            title="Checkout fails",
            ci_name="shop-payment",
            category="software",
        )
    [event] = review(rt.engine, rt.policies)
    payment = problem_for(rt.engine, "ci", "shop-payment")
    assert (event.problem_id, event.event, event.new_incidents) == (payment.id, "updated", [new.id])
    assert len(all_problems(rt.engine)) == 3
    with Session(rt.engine) as session:
        assert linked_incident_ids(session=session, problem_id=payment.id) == [
            *groups["payment"],
            new.id,
        ]


def test_a_rule_with_a_higher_threshold_opens_nothing(rt, policy_with) -> None:
    load_history(rt.engine)
    policies = policy_with(
        "ci: {min_incidents: 3, window: 7d}", "ci: {min_incidents: 4, window: 7d}"
    )
    with Session(rt.engine) as session:
        clusters = problems.detect_clusters(session, policies.problem, NOW)
    assert ("ci", "shop-payment") not in {(c.kind, c.value) for c in clusters}


def test_a_longer_window_counts_older_incidents(rt, policy_with) -> None:
    groups = load_history(rt.engine)
    policies = policy_with(
        "ci: {min_incidents: 3, window: 7d}", "ci: {min_incidents: 3, window: 10d}"
    )
    with Session(rt.engine) as session:
        clusters = problems.detect_clusters(session, policies.problem, NOW)
    wiki = next(c for c in clusters if c.value == "office-wiki")
    assert wiki.count == 4 and set(wiki.incident_ids) == set(
        groups["wiki"] + groups["wiki_old"][:2]
    )


def test_incidents_of_a_closed_problem_do_not_count_again(rt) -> None:
    load_history(rt.engine)
    review(rt.engine, rt.policies)
    payment = problem_for(rt.engine, "ci", "shop-payment")
    with session_scope(rt.engine) as session:
        stored = session.get(Problem, payment.id)
        stored.status = ProblemStatus.closed
        session.add(stored)
    assert review(rt.engine, rt.policies) == []

    with session_scope(rt.engine) as session:
        for hours in (1, 2, 3):
            add_incident(
                session, days_ago=hours / 24, title="Checkout fails", ci_name="shop-payment"
            )
    [event] = review(rt.engine, rt.policies)
    assert event.event == "opened" and event.problem_id != payment.id
    with Session(rt.engine) as session:
        assert len(linked_incident_ids(session=session, problem_id=event.problem_id)) == 3


def test_the_database_refuses_a_second_open_problem_for_one_key(rt) -> None:
    load_history(rt.engine)
    review(rt.engine, rt.policies)
    with pytest.raises(IntegrityError), session_scope(rt.engine) as session:
        session.add(Problem(title="again", match_kind="ci", match_value="shop-payment"))
        session.flush()


def test_an_incident_is_linked_once(rt) -> None:
    groups = load_history(rt.engine)
    review(rt.engine, rt.policies)
    payment = problem_for(rt.engine, "ci", "shop-payment")
    with pytest.raises(IntegrityError), session_scope(rt.engine) as session:
        session.add(ProblemIncident(problem_id=payment.id, incident_id=groups["payment"][0]))
        session.flush()
