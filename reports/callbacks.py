"""The survey callbacks of a report (models/callback.py), by report month.

A callback counts in the month its level 1 started (the unsatisfied answer), and what became of
it is read from its levels as known when the report is made (timestamps up to `as_of`):

- started: callbacks whose level 1 started in the month;
- resolved at level N: the reporter was satisfied at level N;
- unresolved: its last level ended (not satisfied, unreachable, or lapsed) with no level after
  it: the policy's levels were used up (the next level is written with the end of the one
  before, so an ended level without a successor is the last);
- under way: a level is still waiting for its outcome;
- late levels: levels of those callbacks whose deadline passed before an outcome was recorded
  (lapsed, or recorded after it).
"""

from __future__ import annotations

from datetime import datetime

from itilflow.models import SurveyCallback
from itilflow.reports.db import ReportConnection
from itilflow.reports.figures import Figures
from itilflow.reports.period import Month

CALLBACK = SurveyCallback.__tablename__


class CallbackMonth(Figures):
    month: str
    started: int = 0
    # level -> callbacks resolved (satisfied) at that level
    resolved_at: dict[int, int] = {}
    unresolved: int = 0
    under_way: int = 0
    late_levels: int = 0

    @property
    def resolved(self) -> int:
        return sum(self.resolved_at.values())


class CallbackSection(Figures):
    months: list[CallbackMonth]
    # The levels any month's callbacks were resolved at, in order (the table's rows).
    levels: list[int]

    @property
    def current(self) -> CallbackMonth:
        return self.months[-1]

    @property
    def resolved_by_level(self) -> list[tuple[int, list[int]]]:
        """(level, resolved at it in each month), for the table's rows."""
        return [
            (level, [m.resolved_at.get(level, 0) for m in self.months]) for level in self.levels
        ]


def compute_callback_section(
    conn: ReportConnection, months: list[Month], as_of: datetime
) -> CallbackSection:
    rows = conn.execute(
        f"""
        SELECT m.idx, l.incident_id, l.level,
               CASE WHEN l.recorded_at <= :as_of THEN l.outcome END,
               CASE WHEN l.lapsed_at <= :as_of THEN 1 ELSE 0 END,
               CASE WHEN l.lapsed_at <= :as_of
                      OR (l.recorded_at <= :as_of AND l.recorded_at > l.due_at)
                    THEN 1 ELSE 0 END
        FROM _rpt_month m
        JOIN "{CALLBACK}" f ON f.level = 1
             AND f.started_at >= m.start_at AND f.started_at < m.end_at
        JOIN "{CALLBACK}" l ON l.incident_id = f.incident_id
        WHERE f.started_at <= :as_of AND l.started_at <= :as_of
        ORDER BY m.idx, l.incident_id, l.level
        """,
        {"as_of": conn.time(as_of)},
    )
    # (month, incident) -> its levels as (level, outcome, lapsed, late), in order
    callbacks: dict[tuple[int, int], list[tuple[int, str | None, bool, bool]]] = {}
    for month, incident_id, level, outcome, lapsed, late in rows:
        callbacks.setdefault((month, incident_id), []).append(
            (level, outcome, bool(lapsed), bool(late))
        )
    counts = [_Counts() for _ in months]
    for (month, _), levels in callbacks.items():
        counts[month].add(levels)
    found = sorted({level for c in counts for level in c.resolved_at})
    return CallbackSection(
        months=[c.figures(month.key) for c, month in zip(counts, months, strict=True)],
        levels=found,
    )


class _Counts:
    def __init__(self) -> None:
        self.started = self.unresolved = self.under_way = self.late_levels = 0
        self.resolved_at: dict[int, int] = {}

    def add(self, levels: list[tuple[int, str | None, bool, bool]]) -> None:
        self.started += 1
        self.late_levels += sum(1 for *_, late in levels if late)
        satisfied = [level for level, outcome, *_ in levels if outcome == "satisfied"]
        _, last_outcome, last_lapsed, _ = levels[-1]
        if satisfied:
            self.resolved_at[satisfied[0]] = self.resolved_at.get(satisfied[0], 0) + 1
        elif last_outcome is not None or last_lapsed:
            self.unresolved += 1
        else:
            self.under_way += 1

    def figures(self, key: str) -> CallbackMonth:
        return CallbackMonth(
            month=key,
            started=self.started,
            resolved_at=dict(sorted(self.resolved_at.items())),
            unresolved=self.unresolved,
            under_way=self.under_way,
            late_levels=self.late_levels,
        )
