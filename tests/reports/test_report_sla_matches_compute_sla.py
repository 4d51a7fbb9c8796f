"""The report's SQL SLA figures agree with compute_sla, incident by incident.

Random lifecycles (acknowledge, holds, resolutions, reopens, closes at any hour, so the office
calendar's nights, lunch breaks, weekends and holidays all come into play) under the default and
a stricter policy, including incidents resolved while on hold (the hold never counts against
the resolution target).
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from itilflow.models import Incident
from itilflow.policies import compute_sla
from itilflow.reports import compute_report, load_sla_policy
from itilflow.reports.period import parse_period
from itilflow.services.incidents import status_events
from tests.reports.dataset import NOW, Event, make_incident, utc


def random_history(engine, seed: int, count: int) -> None:
    rng = random.Random(seed)
    start = utc(2026, 9, 25)
    for _ in range(count):
        opened = start + timedelta(minutes=rng.randrange(0, 50 * 24 * 60))
        at = timedelta()
        events: list[Event] = []
        state = "open"
        for _ in range(rng.randrange(0, 7)):
            at += timedelta(minutes=rng.choice([1, 7, 30, 45, 90, 240, 600, 1500, 4000]))
            if opened + at > NOW:
                break
            options = {
                "open": ["acknowledged", "on_hold", "resolved"],
                "held": ["resumed", "resolved"],
                "resolved": ["reopened", "closed"],
                "closed": [],
            }[state]
            if not options:
                break
            kind = rng.choice(options)
            if kind == "acknowledged" and any(e.kind == "acknowledged" for e in events):
                kind = "resolved"
            events.append(Event(kind, at))
            state = {
                "on_hold": "held",
                "resumed": "open",
                "resolved": "resolved",
                "reopened": "open",
                "closed": "closed",
            }.get(kind, state)
        make_incident(
            engine, opened=opened, priority=rng.choice(["P1", "P2", "P3", "P4"]), events=events
        )


def oracle(engine, sla_policy, month_key: str) -> Counter:
    month = parse_period(month_key, ZoneInfo("Asia/Shanghai"))
    counts: Counter = Counter()
    with Session(engine) as session:
        for incident in session.exec(select(Incident)):
            if not (month.start <= incident.opened_at < month.end):
                continue
            figures = compute_sla(
                status_events(session, incident.id), sla_policy, incident.priority, NOW
            )
            response = (
                "breached"
                if figures.response_breached
                else "met"
                if figures.responded_at
                else "pending"
            )
            resolution = (
                "breached"
                if figures.resolution_breached
                else "met"
                if figures.time_to_resolve is not None
                else "pending"
            )
            counts[(incident.priority, "response", response)] += 1
            counts[(incident.priority, "resolution", resolution)] += 1
    return counts


def from_report(sla_month) -> Counter:
    counts: Counter = Counter()
    for priority, figures in sla_month.by_priority.items():
        for which, compliance in figures.items():
            for outcome in ("met", "breached", "pending"):
                if n := getattr(compliance, outcome):
                    counts[(priority, which, outcome)] = n
    return counts


def test_sql_and_compute_sla_agree(engine, policies, strict_sla) -> None:
    random_history(engine, seed=5, count=300)
    strict = load_sla_policy(strict_sla)
    for period in ("2026-10", "2026-11"):
        report = compute_report(engine, policies, period=period, now=NOW, what_if_policy=strict_sla)
        section = report.incidents
        assert sum(section.current.by_priority.values()) > 50
        assert from_report(section.current.sla) == oracle(engine, policies.sla, period)
        assert from_report(section.what_if.sla[-1]) == oracle(engine, strict, period)
