"""The incident figures of a report, by SQL aggregation over the incident table and timeline.

How each figure is counted (the report's "how to read" notes say the same):

- Cohort: an incident belongs to the month it was opened in (`incident.opened_at`, month
  boundaries at midnight in report.yaml's time zone). Its outcome is what the timeline says up to
  the moment the report is made (`as_of`), so last month's late incidents count with what
  happened to them since.
- SLA compliance: derived in SQL from the timeline with the same rules as `compute_sla`: business
  time on the priority's calendar from `opened` to the first `acknowledged`/`resolved`/`closed`
  (response), and the business time of the running stretches of the resolution clock (stopped by
  `pause_on` statuses and by resolution, continued by `reopened`). The calendars' open intervals
  are written to a TEMP table with their cumulative business seconds, so "business time between
  a and b" is two indexed look-ups. A target is met when the time used is at most the target;
  an incident still open and within its target is `pending` and left out of the rate.
- MTTA / MTTR: wall-clock seconds from opening to the first response / to the resolution it
  stands in (hold time included: that is how long the reporter waited). Median and p90 by the
  nearest-rank method (the smallest value with at least p% of the values at or below it), in SQL
  with ROW_NUMBER() over each month.
- First-contact resolution: an incident standing resolved that was never reopened, assigned once
  (one `assigned` entry: no reassignment), still held by that first engineer, and never escalated
  up the chain (no `escalated` entry notifying a group lead or a manager; the chain's pages to the
  assignee, group or on-call do not count). Rate: of the incidents standing resolved.
- Reopen rate: incidents reopened at least once, of those resolved at least once.
- Escalations: incidents with any `escalated` entry, the number of entries, and the incidents
  whose chain reached a group lead or manager.
- CSAT: `incident.survey_score` (the latest answer) of the month's incidents.
- Availability per CI: the union of the open stretches (opened or reopened until resolved or
  closed) of incidents of report.yaml's `downtime_priorities` on that CI, clipped to each month
  (and to `as_of` for the month under way); availability = 1 - downtime / the month's length.
  Unlike the other figures this is not a cohort: an outage that began earlier still counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from itilflow.models import Incident, TimelineEntry
from itilflow.policies import CLOCK_KINDS, PRIORITIES, SlaPolicy
from itilflow.reports.availability import availability
from itilflow.reports.db import ReportConnection, bind_list, write_months
from itilflow.reports.figures import (
    Breakdown,
    DurationStats,
    IncidentMonth,
    IncidentSection,
    SlaMonth,
    WhatIf,
)
from itilflow.reports.incident_sla import rank_sql, sla_months
from itilflow.reports.period import Period

INCIDENT = Incident.__tablename__
TIMELINE = TimelineEntry.__tablename__


def prepare(
    conn: ReportConnection, months: list[Period], as_of: datetime, extra_kinds: Sequence[str]
) -> None:
    """Write the TEMP tables every incident query reads: months, cohort, clock events, facts.

    `extra_kinds`: timeline kinds that some SLA policy of this report pauses the clock on.
    """
    as_of_at = conn.time(as_of)
    write_months(conn, months, as_of)
    _write_cohort(conn, as_of_at)
    _write_events(conn, as_of_at, extra_kinds)
    _write_facts(conn)


def _write_cohort(conn: ReportConnection, as_of_at: Any) -> None:
    # The cohort: incidents opened in one of the months (an index range scan per month).
    conn.execute(
        "CREATE TEMP TABLE _rpt_inc (id INTEGER PRIMARY KEY, month INTEGER, priority TEXT, "
        "category TEXT, ci TEXT, assignee TEXT, score INTEGER)"
    )
    conn.execute(
        f"""
        INSERT INTO _rpt_inc
        SELECT i.id, m.idx, i.priority, i.category, i.ci_name, i.assignee, i.survey_score
        FROM _rpt_month m
        JOIN {INCIDENT} i ON i.opened_at >= m.start_at AND i.opened_at < m.end_at
        WHERE i.opened_at <= :as_of
        """,
        {"as_of": as_of_at},
    )
    conn.analyze("_rpt_inc")


def _write_events(conn: ReportConnection, as_of_at: Any, extra_kinds: Sequence[str]) -> None:
    # The timeline entries the figures read, known at as_of, in one pass over the timeline:
    # clock events numbered in the order compute_sla applies them, assignments and escalations.
    kinds = tuple(dict.fromkeys((*CLOCK_KINDS, *extra_kinds, "assigned", "escalated")))
    kinds_sql, kinds_params = bind_list("kind", kinds)
    conn.execute(
        "CREATE TEMP TABLE _rpt_ev (incident_id INTEGER, ord INTEGER, at_s DOUBLE PRECISION, "
        "kind TEXT, detail TEXT)"
    )
    conn.execute(
        f"""
        INSERT INTO _rpt_ev
        SELECT incident_id,
               ROW_NUMBER() OVER (PARTITION BY incident_id ORDER BY at, rank, id),
               at_s, kind, detail
        FROM (
            SELECT t.incident_id, t.id, t.at, {conn.epoch("t.at")} AS at_s, t.kind,
                   {rank_sql("t.kind")} AS rank,
                   CASE t.kind WHEN 'assigned' THEN t.data ->> 'engineer'
                               WHEN 'escalated' THEN t.data ->> 'notify' END
                       AS detail
            FROM _rpt_inc c JOIN {TIMELINE} t ON t.incident_id = c.id
            WHERE t.kind IN ({kinds_sql}) AND t.at <= :as_of
        ) AS entries
        """,
        {**kinds_params, "as_of": as_of_at},
    )
    conn.execute("CREATE INDEX _rpt_ev_i ON _rpt_ev (incident_id, ord)")
    conn.analyze("_rpt_ev")


def _write_facts(conn: ReportConnection) -> None:
    # One row per incident: everything but the SLA (which depends on a policy).
    conn.execute(
        """
        CREATE TEMP TABLE _rpt_fact AS
        WITH opened AS (
            SELECT incident_id AS id, MIN(at_s) AS opened_s, MIN(ord) AS opened_ord
            FROM _rpt_ev WHERE kind = 'opened' GROUP BY incident_id
        ),
        clock AS (
            SELECT e.incident_id AS id,
                   MIN(CASE WHEN e.kind IN ('acknowledged', 'resolved', 'closed')
                            THEN e.at_s END) AS responded_s,
                   COUNT(*) FILTER (WHERE e.kind = 'reopened') AS reopens,
                   MAX(CASE WHEN e.kind IN ('resolved', 'closed') THEN 1 ELSE 0 END)
                       AS ever_resolved,
                   MAX(CASE WHEN e.kind = 'reopened' THEN e.ord END) AS last_reopen_ord
            FROM _rpt_ev e JOIN opened o ON o.id = e.incident_id AND e.ord >= o.opened_ord
            GROUP BY e.incident_id
        ),
        final AS (
            SELECT e.incident_id AS id, MIN(e.at_s) AS resolved_s
            FROM _rpt_ev e JOIN clock k ON k.id = e.incident_id
            WHERE e.kind IN ('resolved', 'closed') AND e.ord > COALESCE(k.last_reopen_ord, 0)
            GROUP BY e.incident_id
        ),
        other AS (
            SELECT incident_id AS id,
                   COUNT(*) FILTER (WHERE kind = 'assigned') AS assignments,
                   MAX(CASE WHEN kind = 'assigned' THEN detail END) AS engineer,
                   COUNT(*) FILTER (WHERE kind = 'escalated') AS escalations,
                   COUNT(*) FILTER (WHERE kind = 'escalated'
                                    AND detail IN ('group_lead', 'manager')) AS hierarchical
            FROM _rpt_ev WHERE kind IN ('assigned', 'escalated')
            GROUP BY incident_id
        )
        SELECT c.id, c.month, c.priority, c.category, c.ci, c.score,
               o.opened_s, o.opened_ord, k.responded_s,
               COALESCE(k.reopens, 0) AS reopens,
               COALESCE(k.ever_resolved, 0) AS ever_resolved,
               f.resolved_s,
               COALESCE(x.escalations, 0) AS escalations,
               COALESCE(x.hierarchical, 0) AS hierarchical,
               CASE WHEN f.resolved_s IS NOT NULL AND COALESCE(k.reopens, 0) = 0
                         AND x.assignments = 1 AND x.engineer IS NOT NULL
                         AND x.engineer = c.assignee AND COALESCE(x.hierarchical, 0) = 0
                    THEN 1 ELSE 0 END AS first_contact
        FROM _rpt_inc c
        LEFT JOIN opened o ON o.id = c.id
        LEFT JOIN clock k ON k.id = c.id
        LEFT JOIN final f ON f.id = c.id
        LEFT JOIN other x ON x.id = c.id
        """
    )
    conn.execute("CREATE UNIQUE INDEX _rpt_fact_i ON _rpt_fact (id)")
    conn.analyze("_rpt_fact")


# --- the other figures (SLA compliance: reports/incident_sla.py; availability:
# reports/availability.py) ------------------------------------------------------------------------


def _durations(conn: ReportConnection, value: str, where: str) -> dict[int, DurationStats]:
    rows = conn.execute(
        f"""
        WITH d AS (SELECT month, {value} AS v FROM _rpt_fact WHERE {where}),
        r AS (
            SELECT month, v,
                   ROW_NUMBER() OVER (PARTITION BY month ORDER BY v) AS rn,
                   COUNT(*) OVER (PARTITION BY month) AS n
            FROM d
        )
        SELECT month, MAX(n),
               MAX(CASE WHEN rn = (n * 50 + 99) / 100 THEN v END),
               MAX(CASE WHEN rn = (n * 90 + 99) / 100 THEN v END)
        FROM r GROUP BY month
        """
    )
    return {
        month: DurationStats(count=n, median=_seconds(median), p90=_seconds(p90))
        for month, n, median, p90 in rows
    }


def _seconds(value: float | None) -> float | None:
    # Float sums of exact timestamps: milliseconds are all the report and the tests need.
    return None if value is None else round(value, 3)


def _breakdown(conn: ReportConnection, column: str, months: int, top: int) -> list[Breakdown]:
    rows = conn.execute(
        f"""
        WITH c AS (SELECT {column} AS name, month, COUNT(*) AS n FROM _rpt_fact
                   GROUP BY {column}, month),
        ranked AS (
            SELECT name, SUM(CASE WHEN month = :last THEN n ELSE 0 END) AS current,
                   SUM(n) AS total
            FROM c GROUP BY name
            ORDER BY current DESC, total DESC, name IS NULL, name LIMIT :top
        )
        SELECT r.name, c.month, c.n FROM ranked r JOIN c ON c.name IS NOT DISTINCT FROM r.name
        ORDER BY r.current DESC, r.total DESC, r.name IS NULL, r.name
        """,
        {"last": months - 1, "top": top},
    )
    found: dict[str | None, list[int]] = {}
    for name, month, count in rows:
        found.setdefault(name, [0] * months)[month] = count
    return [Breakdown(name=name, counts=counts) for name, counts in found.items()]


def incident_months(
    conn: ReportConnection, months: list[Period], sla: list[SlaMonth], survey_scale: int
) -> list[IncidentMonth]:
    counts, totals, scores = _month_counts(conn)
    mtta = _durations(conn, "responded_s - opened_s", "responded_s IS NOT NULL")
    mttr = _durations(conn, "resolved_s - opened_s", "resolved_s IS NOT NULL")

    result = []
    for index, month in enumerate(months):
        row = totals.get(index)
        by_priority = {p: counts.get(index, {}).get(p, 0) for p in (*PRIORITIES, "unclassified")}
        distribution = {s: scores.get(index, {}).get(s, 0) for s in range(1, survey_scale + 1)}
        if row is None:
            result.append(
                IncidentMonth(
                    month=month.key,
                    by_priority=by_priority,
                    sla=sla[index],
                    csat_distribution=distribution,
                )
            )
            continue
        opened, resolved, fcr, ever, reopened, esc_inc, esc, hier, answers, average = row
        result.append(
            IncidentMonth(
                month=month.key,
                opened=opened,
                by_priority=by_priority,
                sla=sla[index],
                mtta=mtta.get(index, DurationStats()),
                mttr=mttr.get(index, DurationStats()),
                resolved=resolved,
                first_contact=fcr,
                ever_resolved=ever,
                reopened=reopened,
                escalated_incidents=esc_inc,
                escalations=esc,
                hierarchical_escalations=hier,
                csat_responses=answers,
                csat_average=average,
                csat_distribution=distribution,
            )
        )
    return result


def _month_counts(
    conn: ReportConnection,
) -> tuple[dict[int, dict[str, int]], dict[int, tuple[Any, ...]], dict[int, dict[int, int]]]:
    """Per month index: incidents by priority, the month's totals, survey scores by value."""
    counts: dict[int, dict[str, int]] = {}
    for month, priority, n in conn.execute(
        "SELECT month, priority, COUNT(*) FROM _rpt_fact GROUP BY month, priority"
    ):
        counts.setdefault(month, {})[priority or "unclassified"] = n
    totals = {
        row[0]: row[1:]
        for row in conn.execute(
            """
            SELECT month, COUNT(*), COUNT(*) FILTER (WHERE resolved_s IS NOT NULL),
                   SUM(first_contact), SUM(ever_resolved),
                   COUNT(*) FILTER (WHERE ever_resolved = 1 AND reopens > 0),
                   COUNT(*) FILTER (WHERE escalations > 0), SUM(escalations),
                   COUNT(*) FILTER (WHERE hierarchical > 0),
                   COUNT(score), AVG(score)
            FROM _rpt_fact GROUP BY month
            """
        )
    }
    scores: dict[int, dict[int, int]] = {}
    for month, score, n in conn.execute(
        "SELECT month, score, COUNT(*) FROM _rpt_fact WHERE score IS NOT NULL GROUP BY month, score"
    ):
        scores.setdefault(month, {})[int(score)] = n
    return counts, totals, scores


def compute_incident_section(
    conn: ReportConnection,
    *,
    months: list[Period],
    as_of: datetime,
    sla_policy: SlaPolicy,
    survey_scale: int,
    downtime_priorities: Sequence[str],
    top: int,
    what_if: tuple[str, SlaPolicy] | None = None,
) -> IncidentSection:
    pause_kinds = [*sla_policy.pause_on, *(what_if[1].pause_on if what_if else [])]
    prepare(conn, months, as_of, pause_kinds)
    sla = sla_months(conn, sla_policy, months, as_of)
    other = None
    if what_if is not None:
        other = WhatIf(policy=what_if[0], sla=sla_months(conn, what_if[1], months, as_of))
    return IncidentSection(
        months=incident_months(conn, months, sla, survey_scale),
        categories=_breakdown(conn, "category", len(months), top),
        cis=_breakdown(conn, "ci", len(months), top),
        availability=availability(conn, months, as_of, downtime_priorities, top),
        what_if=other,
    )
