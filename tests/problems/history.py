"""A generated incident history with known clusters, and small factories for problem tests.

Incidents are inserted directly (no flow runs) with the CIs, categories, fingerprints and times
the tests need. NOW is a Monday, 10:00 in Asia/Shanghai.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from itilflow.models import (
    Change,
    ChangeStatus,
    Incident,
    IncidentStatus,
    Problem,
    get_open_problem,
    session_scope,
)
from itilflow.policies import Policies
from itilflow.services import problems

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def add_incident(session: Session, *, days_ago: float, **fields: Any) -> Incident:
    """An incident opened `days_ago` days before NOW (a closed one unless a status is given)."""
    opened_at = NOW - timedelta(days=days_ago)
    values: dict[str, Any] = {
        "title": "Something failed",
        "priority": "P3",
        "status": IncidentStatus.closed,
        "opened_at": opened_at,
        "updated_at": opened_at,
        **fields,
    }
    incident = Incident(**values)
    session.add(incident)
    session.flush()
    return incident


def load_history(engine: Engine) -> dict[str, list[int]]:
    """Three clusters (CI shop-payment, category network, alert fp-disk-erp) and groups just
    below the threshold or outside the window. Returns the incident ids by group name."""
    groups: dict[str, list[int]] = {}

    def add(name: str, days_ago: float, **fields: Any) -> None:
        with session_scope(engine) as session:
            incident = add_incident(session, days_ago=days_ago, **fields)
            groups.setdefault(name, []).append(incident.id or 0)

    # CI cluster: 3 within 7 days (one still open); the follow-up of one of them does not count.
    for days_ago, status in ((6.5, IncidentStatus.closed), (3, IncidentStatus.resolved), (1, None)):
        add(
            "payment",
            days_ago,
            title="Payment module returns HTTP 500 at checkout",
            ci_name="shop-payment",
            category="software",
            status=status or IncidentStatus.assigned,
        )
    add(
        "follow_up",
        0.5,
        title="Survey follow-up",
        ci_name="shop-payment",
        category="software",
        parent_id=groups["payment"][0],
    )
    # Just below: 2 within the window on office-wiki, and 3 more that are older than 7 days.
    for days_ago in (2, 5):
        add("wiki", days_ago, title="Office wiki is slow", ci_name="office-wiki", category="app")
    for days_ago in (7.5, 9, 20):
        add(
            "wiki_old", days_ago, title="Office wiki is slow", ci_name="office-wiki", category="app"
        )
    # Category cluster: 5 network incidents on five different switches.
    for index in range(5):
        add(
            "network",
            index + 0.25,
            title=f"Packet loss on access switch {index}",
            ci_name=f"access-sw-{index}",
            category="network",
        )
    # Just below for categories: 4 hardware incidents on different machines.
    for index in range(4):
        add(
            "hardware",
            index + 1,
            title="Fan failure",
            ci_name=f"pc-{index}",
            category="hardware",
        )
    # Alert cluster: one fingerprint three times, no CI; the fourth is outside the window.
    for days_ago in (0.1, 2.2, 4.4, 8):
        add(
            "disk" if days_ago < 7 else "disk_old",
            days_ago,
            title="Disk on erp-db-01 almost full",
            fingerprint="fp-disk-erp",
            category="database",
            source="alertmanager",
        )
    return groups


def review(engine: Engine, policies: Policies, now: datetime = NOW) -> list[problems.ProblemEvent]:
    """What the review flow does, without the engine: detect, open or update, review fixes."""
    with session_scope(engine) as session:
        clusters = problems.detect_clusters(session, policies.problem, now)
        events = problems.open_or_update_problems(session, clusters, policies=policies)
        return events + problems.review_fixes(session, policies=policies, now=now)


def problem_for(engine: Engine, kind: str, value: str) -> Problem:
    with session_scope(engine) as session:
        problem = get_open_problem(session=session, match_kind=kind, match_value=value)
        assert problem is not None, f"no problem for {kind}={value}"
        return problem


def act(engine: Engine, policies: Policies, problem_id: int, action: str, **data: Any) -> Problem:
    with session_scope(engine) as session:
        return problems.apply_action(
            session,
            problem_id,
            action,
            actor="tester",
            data=problems.ActionInput(**data),
            policies=policies,
        )


def add_change(engine: Engine, status: ChangeStatus, title: str = "Fix the payment pool") -> int:
    with session_scope(engine) as session:
        change = Change(title=title, ci_names=["shop-payment"], status=status)
        session.add(change)
        session.flush()
        assert change.id is not None
        return change.id


WHYS = [
    {"why": "Why did checkout fail?", "answer": "The payment service returned HTTP 500."},
    {"why": "Why HTTP 500?", "answer": "Its database connection pool was exhausted."},
    {"why": "Why exhausted?", "answer": "The pool size of 10 was set before traffic tripled."},
]
WORKAROUND = "Restart the payment service: systemctl restart payment"


def make_known_error(engine: Engine, policies: Policies, problem_id: int, **extra: Any) -> None:
    """Analyse the problem, give it a workaround and mark it a known error."""
    act(
        engine,
        policies,
        problem_id,
        "analyse",
        whys=WHYS,
        root_cause="Connection pool too small",
        root_cause_category="capacity",
    )
    act(engine, policies, problem_id, "known_error", workaround=WORKAROUND, **extra)
