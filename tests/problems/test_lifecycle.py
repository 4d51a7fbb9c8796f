"""The problem lifecycle: analysis, workaround, known error, a fix through a change, the quiet
period and recurrence; and every transition the state does not allow is refused."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from itilflow import clock
from itilflow.models import (
    Change,
    ChangeStatus,
    Problem,
    ProblemStatus,
    get_article_of,
    get_problem_timeline,
    session_scope,
)
from itilflow.services import problems
from tests.problems.history import (
    DAY,
    NOW,
    WHYS,
    WORKAROUND,
    act,
    add_change,
    add_incident,
    load_history,
    make_known_error,
    problem_for,
    review,
)


@pytest.fixture
def payment(rt) -> Problem:
    load_history(rt.engine)
    clock.freeze(NOW)
    review(rt.engine, rt.policies)
    return problem_for(rt.engine, "ci", "shop-payment")


def refused(rt, problem_id: int, action: str, match: str, **data) -> None:
    with pytest.raises(problems.ProblemError, match=match):
        act(rt.engine, rt.policies, problem_id, action, **data)


def timeline_kinds(rt, problem_id: int) -> list[str]:
    with Session(rt.engine) as session:
        return [e.kind for e in get_problem_timeline(session=session, problem_id=problem_id)]


def test_from_repeated_incidents_to_closed(rt, payment) -> None:
    pid = payment.id
    assert act(rt.engine, rt.policies, pid, "investigate").status == ProblemStatus.investigating
    analysed = act(
        rt.engine,
        rt.policies,
        pid,
        "analyse",
        whys=WHYS,
        root_cause_category="capacity",
    )
    assert analysed.root_cause == WHYS[-1]["answer"]  # the last answer, when none is given
    assert analysed.whys == WHYS
    act(rt.engine, rt.policies, pid, "workaround", workaround=WORKAROUND)
    known = act(rt.engine, rt.policies, pid, "known_error", keywords=["Payment", "checkout", "500"])
    assert known.status == ProblemStatus.known_error and known.known_error
    with Session(rt.engine) as session:
        article = get_article_of(session=session, problem_id=pid)
    assert article.workaround == WORKAROUND
    assert article.keywords == "payment checkout 500"
    assert article.ci_name == "shop-payment" and article.category == "software"
    assert "Payment module returns HTTP 500" in article.symptoms

    change_id = add_change(rt.engine, ChangeStatus.implementing)
    fixing = act(rt.engine, rt.policies, pid, "link_fix", change=f"CHG-{change_id:06d}")
    assert fixing.status == ProblemStatus.fix_in_progress and fixing.fix_change_id == change_id
    assert fixing.known_error  # still a known error until it is fixed
    refused(rt, pid, "resolve", "not fixed yet: CHG-.* is implementing")

    with session_scope(rt.engine) as session:
        change = session.get(Change, change_id)
        change.status = ChangeStatus.successful
        session.add(change)
    clock.advance(DAY)
    [resolved] = review(rt.engine, rt.policies, clock.now())  # the review notices the change
    assert resolved.event == "resolved"
    refused(rt, pid, "close", "quiet period until")

    clock.advance(rt.policies.problem.quiet_period)
    [closed] = review(rt.engine, rt.policies, clock.now())
    assert closed.event == "closed"
    with Session(rt.engine) as session:
        stored = session.get(Problem, pid)
    assert stored.status == ProblemStatus.closed and stored.closed_at == clock.now()
    assert timeline_kinds(rt, pid)[3:] == [
        "investigating",
        "root_cause",
        "workaround",
        "known_error",
        "fix_linked",
        "resolved",
        "closed",
    ]


def test_a_recurrence_after_the_fix_reopens_the_problem(rt, payment) -> None:
    pid = payment.id
    make_known_error(rt.engine, rt.policies, pid)
    change_id = add_change(rt.engine, ChangeStatus.successful)
    act(rt.engine, rt.policies, pid, "link_fix", change=str(change_id))
    act(rt.engine, rt.policies, pid, "resolve", note="pool raised to 50")

    clock.advance(5 * DAY)
    with session_scope(rt.engine) as session:
        again = add_incident(
            session, days_ago=-4, title="Checkout fails again", ci_name="shop-payment"
        )
    [event] = review(rt.engine, rt.policies, clock.now())
    assert (event.event, event.new_incidents) == ("reopened", [again.id])
    with Session(rt.engine) as session:
        stored = session.get(Problem, pid)
    assert stored.status == ProblemStatus.investigating and stored.resolved_at is None
    assert timeline_kinds(rt, pid)[-2:] == ["incidents_linked", "reopened"]


def test_closing_by_hand_waits_out_the_quiet_period(rt, payment) -> None:
    pid = payment.id
    make_known_error(rt.engine, rt.policies, pid)
    act(
        rt.engine,
        rt.policies,
        pid,
        "link_fix",
        change=str(add_change(rt.engine, ChangeStatus.successful)),
    )
    act(rt.engine, rt.policies, pid, "resolve")
    clock.advance(rt.policies.problem.quiet_period - DAY)
    refused(rt, pid, "close", "in its quiet period until .* \\(14d after the fix\\)")
    clock.advance(DAY)
    assert act(rt.engine, rt.policies, pid, "close", note="quiet").status == ProblemStatus.closed
    refused(rt, pid, "comment", "is closed", note="too late")
    refused(rt, pid, "reopen", "is closed", note="again")


def test_refusals_name_the_state_and_what_is_missing(rt, payment) -> None:
    pid = payment.id
    refused(rt, pid, "known_error", "no root cause yet", workaround=WORKAROUND)
    refused(rt, pid, "link_fix", "needs one of investigating, known_error, fix_in_progress")
    refused(rt, pid, "resolve", "'resolve' needs one of fix_in_progress")
    refused(rt, pid, "close", "'close' needs one of resolved")
    refused(rt, pid, "analyse", "whys: expected at least one", root_cause_category="capacity")
    refused(
        rt,
        pid,
        "analyse",
        "root_cause_category: expected one of hardware, software",
        whys=WHYS,
        root_cause_category="gremlins",
    )
    refused(
        rt,
        pid,
        "analyse",
        r"whys\[0\]",
        whys=[{"why": "x", "answer": " "}],
        root_cause_category="capacity",
    )
    refused(rt, pid, "workaround", "workaround: expected", workaround="  ")
    refused(rt, pid, "reopen", "'reopen' needs one of resolved", note="why")
    refused(rt, pid, "assign", "exactly one of", engineer="chen", group="dba")
    refused(rt, pid, "assign", "'nobody' is not known", engineer="nobody")
    refused(rt, pid, "frobnicate", "unknown action 'frobnicate'")

    act(rt.engine, rt.policies, pid, "analyse", whys=WHYS, root_cause_category="capacity")
    refused(rt, pid, "known_error", "has no workaround")
    refused(rt, pid, "link_fix", "expected the fixing change")
    refused(rt, pid, "link_fix", "not found", change="CHG-000999")
    rejected = add_change(rt.engine, ChangeStatus.rejected)
    refused(rt, pid, "link_fix", "is rejected: it will fix nothing", change=str(rejected))
    refused(rt, pid, "investigate", "'investigate' needs one of open")
    # Nothing refused changed anything.
    assert timeline_kinds(rt, pid)[3:] == ["root_cause"]


def test_assigning_and_commenting(rt, payment) -> None:
    pid = payment.id
    moved = act(rt.engine, rt.policies, pid, "assign", group="dba", note="it is the database")
    assert (moved.owner, moved.owner_group) == (None, "dba")
    moved = act(rt.engine, rt.policies, pid, "assign", engineer="liu")
    assert (moved.owner, moved.owner_group) == ("liu", "applications")
    act(rt.engine, rt.policies, pid, "comment", note="vendor contacted")
    assert timeline_kinds(rt, pid)[-3:] == ["assigned", "assigned", "commented"]


def test_a_new_workaround_updates_the_article(rt, payment) -> None:
    pid = payment.id
    make_known_error(rt.engine, rt.policies, pid)
    act(rt.engine, rt.policies, pid, "workaround", workaround="Fail over to the standby pool")
    with Session(rt.engine) as session:
        article = get_article_of(session=session, problem_id=pid)
    assert article.workaround == "Fail over to the standby pool"
