"""Two quarters of P1 incidents (Asia/Shanghai), the second worse than the first.

2026-Q2: 50 incidents, acknowledged in 10 minutes, resolved in 2 hours, except 2 resolved in
5 hours (over P1's 4 h): resolution compliance 96 %, MTTR median 2h 00m.
2026-Q3: 50 incidents, acknowledged in 10 minutes, 5 resolved in 5 hours, the others in 3 hours:
resolution compliance 90 %, MTTR median 3h 00m. Response compliance is 100 % in both.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from tests.reports.dataset import Event, assigned, make_incident

# 08:30 on 1 October in Shanghai: the quarterly report's schedule fires for 2026-Q3.
NOW_Q = datetime(2026, 10, 1, 0, 30, tzinfo=UTC)
M = timedelta(minutes=1)
H = timedelta(hours=1)


def _quarter(engine: Engine, first: datetime, breached: int, resolved_in: timedelta) -> None:
    for number in range(50):
        opened = first + timedelta(days=number, hours=1)
        took = 5 * H if number < breached else resolved_in
        make_incident(
            engine,
            opened=opened,
            priority="P1",
            category="database",
            ci="db1",
            assignee="chen",
            events=[assigned("chen"), Event("acknowledged", 10 * M), Event("resolved", took)],
        )


def load_two_quarters(engine: Engine) -> None:
    _quarter(engine, datetime(2026, 4, 2, tzinfo=UTC), breached=2, resolved_in=2 * H)
    _quarter(engine, datetime(2026, 7, 2, tzinfo=UTC), breached=5, resolved_in=3 * H)
