"""Availability per CI: the union of the open stretches of incidents of report.yaml's
`downtime_priorities` on the CI, clipped to each month (reports/incidents.py's docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from itilflow.models import Incident, TimelineEntry
from itilflow.reports.db import ReportConnection, bind_list, epoch
from itilflow.reports.figures import Availability
from itilflow.reports.incident_sla import rank_sql
from itilflow.reports.period import Period

INCIDENT = Incident.__tablename__
TIMELINE = TimelineEntry.__tablename__


def availability(
    conn: ReportConnection,
    months: list[Period],
    as_of: datetime,
    priorities: Sequence[str],
    top: int,
) -> list[Availability]:
    """Downtime and availability per CI and month; the least available CIs of the last month
    first, only CIs with some downtime in the months shown."""
    if not priorities:
        return []
    priorities_sql, priorities_params = bind_list("priority", priorities)
    rows = conn.execute(
        _ci_downtime_sql(conn, priorities_sql),
        {
            **priorities_params,
            "end": conn.time(months[-1].end),
            "as_of": conn.time(as_of),
            "start": conn.time(months[0].start),
            "as_of_s": epoch(as_of),
        },
    )
    lengths = [max(0.0, min(epoch(m.end), epoch(as_of)) - epoch(m.start)) for m in months]
    downtime: dict[str, list[float]] = {}
    for index, ci, seconds in rows:
        downtime.setdefault(ci, [0.0] * len(months))[index] = round(seconds, 3)
    result = [
        Availability(
            ci=ci,
            downtime=[d if lengths[i] else None for i, d in enumerate(values)],
            availability=[
                round(1 - d / lengths[i], 6) if lengths[i] else None for i, d in enumerate(values)
            ],
        )
        for ci, values in downtime.items()
    ]
    result.sort(key=lambda a: (a.availability[-1] if a.availability[-1] is not None else 1, a.ci))
    return result[:top]


def _ci_downtime_sql(conn: ReportConnection, priorities_sql: str) -> str:
    """Seconds down per month and CI: the incidents of the priorities that count, opened or
    reopened until resolved or closed, overlapping outages of one CI merged into islands."""
    return f"""
        WITH cand AS (
            SELECT id, ci_name AS ci FROM {INCIDENT}
            WHERE priority IN ({priorities_sql}) AND ci_name IS NOT NULL
              AND opened_at < :end AND opened_at <= :as_of
              AND (resolved_at IS NULL OR resolved_at >= :start)
        ),
        ev AS (
            SELECT c.ci, t.incident_id AS id, {conn.epoch("t.at")} AS at_s,
                   CASE WHEN t.kind IN ('opened', 'reopened') THEN 1 ELSE 0 END AS down,
                   ROW_NUMBER() OVER (PARTITION BY t.incident_id
                                      ORDER BY t.at, {rank_sql("t.kind")},
                                      t.id) AS ord
            FROM cand c JOIN {TIMELINE} t ON t.incident_id = c.id
            WHERE t.kind IN ('opened', 'reopened', 'resolved', 'closed') AND t.at <= :as_of
        ),
        seg AS (
            SELECT ci, down, at_s AS s,
                   COALESCE(LEAD(at_s) OVER (PARTITION BY id ORDER BY ord), :as_of_s) AS e
            FROM ev
        ),
        down AS (SELECT ci, s, e FROM seg WHERE down = 1 AND e > s),
        marked AS (
            SELECT ci, s, e,
                   CASE WHEN s <= MAX(e) OVER (PARTITION BY ci ORDER BY s, e
                                               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                        THEN 0 ELSE 1 END AS starts
            FROM down
        ),
        grouped AS (
            SELECT ci, s, e,
                   SUM(starts) OVER (PARTITION BY ci ORDER BY s, e ROWS UNBOUNDED PRECEDING)
                   AS island
            FROM marked
        ),
        islands AS (SELECT ci, MIN(s) AS s, MAX(e) AS e FROM grouped GROUP BY ci, island)
        SELECT m.idx, i.ci,
               SUM({conn.least("i.e", "m.end_eff_s")} - {conn.greatest("i.s", "m.start_s")})
        FROM islands i JOIN _rpt_month m ON i.s < m.end_eff_s AND i.e > m.start_s
        GROUP BY m.idx, i.ci
        """
