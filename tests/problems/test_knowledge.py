"""Knowledge articles from known errors: search in SQL, and matching new incidents to them."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from itilflow import clock
from itilflow.models import (
    Incident,
    Problem,
    ProblemStatus,
    get_timeline,
    linked_incident_ids,
    session_scope,
)
from itilflow.services import problems
from tests.problems.history import (
    NOW,
    WORKAROUND,
    add_incident,
    load_history,
    make_known_error,
    problem_for,
    review,
)


@pytest.fixture
def known_errors(rt) -> dict[str, int]:
    """Two known errors: the payment CI and the disk alert."""
    load_history(rt.engine)
    clock.freeze(NOW)
    review(rt.engine, rt.policies)
    payment = problem_for(rt.engine, "ci", "shop-payment")
    disk = problem_for(rt.engine, "fingerprint", "fp-disk-erp")
    make_known_error(rt.engine, rt.policies, payment.id, keywords=["payment", "checkout"])
    make_known_error(
        rt.engine,
        rt.policies,
        disk.id,
        keywords=["disk", "full", "ERP"],
        symptoms="Disk usage above 90% on the ERP database; payment exports stall",
    )
    return {"payment": payment.id, "disk": disk.id}


def search(rt, query: str) -> list[tuple[str, int]]:
    with Session(rt.engine) as session:
        return [
            (article.title, score) for article, score in problems.search_articles(session, query)
        ]


def test_search_is_case_insensitive_and_ranked(rt, known_errors) -> None:
    found = search(rt, "PAYMENT")
    # The payment article has it in title, keywords, symptoms and workaround (3 + 3 + 2 + 1);
    # the disk article only in its symptoms (2).
    assert found[0] == ("Repeated incidents on shop-payment", 9)
    assert found[1][0] == "Repeated alert: Disk on erp-db-01 almost full"
    assert found[1][1] < found[0][1]
    assert [title for title, _ in search(rt, "disk full")][:1] == [
        "Repeated alert: Disk on erp-db-01 almost full"
    ]
    assert search(rt, "systemctl")[0][0] == "Repeated incidents on shop-payment"  # workaround


def test_search_finds_nothing_for_unknown_words_and_wildcards(rt, known_errors) -> None:
    assert search(rt, "printer") == []
    # LIKE's wildcards are plain characters: "%" finds only the "90%" in the disk symptoms.
    assert [title for title, _ in search(rt, "%")] == [
        "Repeated alert: Disk on erp-db-01 almost full"
    ]
    assert search(rt, "_") == []
    assert len(search(rt, "")) == 2  # an empty query lists the latest


def _incident(rt, **fields) -> Incident:
    with session_scope(rt.engine) as session:
        return add_incident(session, days_ago=0, status="new", **fields)


def _match(rt, incident: Incident):
    with session_scope(rt.engine) as session:
        stored = session.get(Incident, incident.id)
        return problems.record_known_error_match(
            session, stored, rt.policies.problem, actor="tester"
        )


def test_a_new_incident_matches_by_fingerprint_ci_and_category_or_keywords(
    rt, known_errors
) -> None:
    by_fingerprint = _match(rt, _incident(rt, title="Disk alert", fingerprint="fp-disk-erp"))
    assert by_fingerprint["reason"] == "same alert fingerprint"
    assert by_fingerprint["problem"] == f"PRB-{known_errors['disk']:06d}"

    by_ci = _match(
        rt, _incident(rt, title="Shop broken", ci_name="shop-payment", category="software")
    )
    assert by_ci["reason"] == "same configuration item (shop-payment) and category"
    assert by_ci["workaround"] == WORKAROUND

    # Only the CI, another category: no; two of the article's keywords in the text: yes.
    assert _match(rt, _incident(rt, title="Slow", ci_name="shop-payment", category="app")) is None
    by_words = _match(rt, _incident(rt, title="Checkout page: payment fails", category="app"))
    assert by_words["reason"] == "keywords payment, checkout"
    assert _match(rt, _incident(rt, title="Payment question")) is None  # one keyword only


def test_the_match_is_on_the_timeline_once_and_links_the_incident(rt, known_errors) -> None:
    incident = _incident(rt, title="Disk alert", fingerprint="fp-disk-erp")
    first = _match(rt, incident)
    assert _match(rt, incident) == first
    with Session(rt.engine) as session:
        entries = [
            e
            for e in get_timeline(session=session, incident_id=incident.id)
            if e.kind == "known_error_matched"
        ]
        linked = linked_incident_ids(session=session, problem_id=known_errors["disk"])
    [entry] = entries
    assert "workaround: " + WORKAROUND in entry.message
    assert incident.id in linked


def test_closed_problems_match_nothing(rt, known_errors) -> None:
    with session_scope(rt.engine) as session:
        problem = session.get(Problem, known_errors["disk"])
        problem.status = ProblemStatus.closed
        session.add(problem)
    assert _match(rt, _incident(rt, title="Disk alert", fingerprint="fp-disk-erp")) is None
    # ... but their articles stay in the knowledge base.
    assert search(rt, "disk")[0][0] == "Repeated alert: Disk on erp-db-01 almost full"
