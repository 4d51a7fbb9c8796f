"""The proactive notices' figures of a report (issue 15's proactive contact): per report month,
notices raised (`created_at` in the month), accepted and declined (`decided_at` in the month, by
the decision), and those that ended undecided as not needed (the check recovered) or expired
(the foreseen moment came first): their `cleared_at` in the month. Only what is known when the
report is made (timestamps up to `as_of`) counts.

A section of its own (registered in sections.py), so the report's other sections never change
for it.
"""

from __future__ import annotations

from datetime import datetime

from itilflow.models import ProactiveNotice
from itilflow.reports.db import ReportConnection
from itilflow.reports.figures import Figures
from itilflow.reports.period import Period

PROACTIVE = ProactiveNotice.__tablename__  # type: ignore[attr-defined]
COUNTED = ("raised", "accepted", "declined", "not_needed", "expired")


class ProactiveMonth(Figures):
    month: str
    raised: int = 0
    accepted: int = 0
    declined: int = 0
    not_needed: int = 0
    expired: int = 0


class ProactiveSection(Figures):
    months: list[ProactiveMonth]

    @property
    def current(self) -> ProactiveMonth:
        return self.months[-1]


def compute_proactive_section(
    conn: ReportConnection, months: list[Period], as_of: datetime
) -> ProactiveSection:
    rows = conn.execute(
        f"""
        WITH events AS (
            SELECT created_at AS at, 'raised' AS kind FROM "{PROACTIVE}"
            UNION ALL
            SELECT decided_at, status FROM "{PROACTIVE}"
            WHERE decided_at IS NOT NULL AND status IN ('accepted', 'declined')
            UNION ALL
            SELECT cleared_at, status FROM "{PROACTIVE}"
            WHERE cleared_at IS NOT NULL AND status IN ('not_needed', 'expired')
        )
        SELECT m.idx, e.kind, COUNT(*)
        FROM _rpt_month m JOIN events e ON e.at >= m.start_at AND e.at < m.end_at
        WHERE e.at <= :as_of
        GROUP BY m.idx, e.kind
        """,
        {"as_of": conn.time(as_of)},
    )
    counts: dict[int, dict[str, int]] = {}
    for month, kind, n in rows:
        counts.setdefault(month, {})[kind] = n
    return ProactiveSection(
        months=[
            ProactiveMonth(month=month.key, **{k: counts.get(index, {}).get(k, 0) for k in COUNTED})
            for index, month in enumerate(months)
        ]
    )
