"""SLA compliance of the report's incidents, in SQL with the rules of `compute_sla`.

The calendars' open intervals go to a TEMP table with their cumulative business seconds, so
"business time between a and b" is two indexed look-ups; each incident's clock events (from
reports/incidents.py's `_rpt_ev`) become running, paused and resolved stretches whose business
time is summed against the priority's targets. reports/incidents.py's docstring says how each
figure is counted.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from itilflow.policies import CLOCK_KINDS, SlaPolicy
from itilflow.reports.db import ReportConnection, epoch
from itilflow.reports.figures import Compliance, SlaMonth
from itilflow.reports.period import Period


def rank_sql(column: str) -> str:
    """SQL: the rank of a clock event, so that events at the same instant apply in lifecycle
    order (as compute_sla does)."""
    whens = " ".join(f"WHEN '{kind}' THEN {rank}" for rank, kind in enumerate(CLOCK_KINDS))
    return f"CASE {column} {whens} ELSE {len(CLOCK_KINDS)} END"


# Timestamps are exact to the microsecond; sums of business time carry float rounding only.
_TOLERANCE = 0.0001


def _business(conn: ReportConnection, cal: str, at: str) -> str:
    """SQL: business seconds on calendar `cal` from the table's origin up to instant `at`."""
    used = conn.least(f"{at} - k.start_s", "k.end_s - k.start_s")
    return (
        f"COALESCE((SELECT k.cum_s + {used} FROM _rpt_cal k "
        f"WHERE k.cal = {cal} AND k.start_s <= {at} ORDER BY k.start_s DESC LIMIT 1), 0)"
    )


def _load_policy(
    conn: ReportConnection, policy: SlaPolicy, start: datetime, as_of: datetime
) -> None:
    for table in ("_rpt_cal", "_rpt_target", "_rpt_pause"):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(
        "CREATE TEMP TABLE _rpt_cal (cal TEXT, start_s DOUBLE PRECISION, "
        "end_s DOUBLE PRECISION, cum_s DOUBLE PRECISION)"
    )
    conn.execute(
        "CREATE TEMP TABLE _rpt_target (priority TEXT PRIMARY KEY, cal TEXT, "
        "response_s DOUBLE PRECISION, resolution_s DOUBLE PRECISION, asof_b DOUBLE PRECISION)"
    )
    conn.execute("CREATE TEMP TABLE _rpt_pause (kind TEXT PRIMARY KEY)")
    conn.executemany(
        "INSERT INTO _rpt_pause VALUES (:kind)", [{"kind": k} for k in set(policy.pause_on)]
    )
    # Open intervals of each calendar in use, from a day before the first month to a day after
    # as_of (every event the queries look at lies in between), with the business seconds before
    # each. Calendar._intervals is the walk compute_sla's arithmetic uses, so both agree.
    origin, until, as_of_s = start - timedelta(days=1), as_of + timedelta(days=1), epoch(as_of)
    at_as_of: dict[str, float] = {}
    for name in sorted({target.calendar for target in policy.targets.values()}):
        calendar = policy.calendars[name].calendar()
        rows, total, at_as_of[name] = [], 0.0, 0.0
        for opens, closes in calendar._intervals(origin):  # noqa: SLF001
            if opens >= until:
                break
            start_s, end_s = epoch(opens), epoch(closes)
            rows.append({"cal": name, "start_s": start_s, "end_s": end_s, "cum_s": total})
            if start_s <= as_of_s:
                at_as_of[name] = total + min(as_of_s, end_s) - start_s
            total += end_s - start_s
        conn.executemany("INSERT INTO _rpt_cal VALUES (:cal, :start_s, :end_s, :cum_s)", rows)
    conn.executemany(
        "INSERT INTO _rpt_target VALUES (:priority, :cal, :response_s, :resolution_s, :asof_b)",
        [
            {
                "priority": priority,
                "cal": target.calendar,
                "response_s": target.response.total_seconds(),
                "resolution_s": target.resolution.total_seconds(),
                "asof_b": at_as_of[target.calendar],
            }
            for priority, target in policy.targets.items()
        ],
    )
    conn.execute("CREATE INDEX _rpt_cal_i ON _rpt_cal (cal, start_s)")
    for table in ("_rpt_cal", "_rpt_target", "_rpt_pause"):
        conn.analyze(table)


def _in_open(cal: str, at: str) -> str:
    """SQL: whether business time runs right up to instant `at` (opens < at <= closes)."""
    return (
        f"COALESCE((SELECT k.end_s >= {at} FROM _rpt_cal k WHERE k.cal = {cal} "
        f"AND k.start_s < {at} ORDER BY k.start_s DESC LIMIT 1), FALSE)"
    )


def _status_sql(conn: ReportConnection) -> str:
    """SQL (CTEs ending in `status`): each cohort incident's response and resolution outcome
    (met / breached / pending) under the policy in _rpt_cal / _rpt_target / _rpt_pause.

    A target used up exactly is breached when the moment that counts (the response, the
    resolution, or as_of while open) came after the deadline: the clock was paused or closed
    (outside business hours) when the time ran out. This is compute_sla's `moment > due`.
    """
    return f"""
        WITH ev AS (
            SELECT e.incident_id AS id, e.ord, e.at_s,
                   CASE WHEN e.kind IN (SELECT kind FROM _rpt_pause) THEN 'paused'
                        WHEN e.kind IN ('resolved', 'closed') THEN 'resolved'
                        ELSE 'running' END AS state
            FROM _rpt_ev e JOIN _rpt_fact f ON f.id = e.incident_id
            WHERE e.ord >= f.opened_ord
              AND (e.kind IN ('opened', 'resumed', 'reopened', 'resolved', 'closed')
                   OR e.kind IN (SELECT kind FROM _rpt_pause))
        ),
        changes AS (
            SELECT id, ord, at_s, state,
                   LAG(state) OVER (PARTITION BY id ORDER BY ord) AS before
            FROM ev
        ),
        -- Where the state changes, the business time on the incident's calendar (one look-up
        -- per change; a segment ends where the next begins, or at as_of). MATERIALIZED: else
        -- PostgreSQL may inline these into a nested loop and redo the look-ups per incident.
        marks AS MATERIALIZED (
            SELECT c.id, c.ord, c.at_s, c.state, c.before, t.cal, t.asof_b,
                   {_business(conn, "t.cal", "c.at_s")} AS b
            FROM changes c JOIN _rpt_fact f ON f.id = c.id
            JOIN _rpt_target t ON t.priority = f.priority
            WHERE c.before IS NULL OR c.before != c.state
        ),
        seg AS MATERIALIZED (
            SELECT id, cal, state, before, at_s AS s, b,
                   COALESCE(LEAD(b) OVER w, asof_b) AS b_end,
                   ROW_NUMBER() OVER (PARTITION BY id ORDER BY ord DESC) AS from_end
            FROM marks
            WINDOW w AS (PARTITION BY id ORDER BY ord)
        ),
        per AS (
            SELECT seg.id, seg.cal, t.resolution_s,
                   SUM(CASE WHEN seg.state = 'running' THEN seg.b_end - seg.b ELSE 0 END)
                       AS elapsed,
                   MAX(CASE WHEN seg.from_end = 1 THEN seg.state END) AS final_state,
                   MAX(CASE WHEN seg.from_end = 1 THEN seg.before END) AS before_final,
                   MAX(CASE WHEN seg.from_end = 1 AND seg.state = 'resolved' THEN seg.s END)
                       AS resolved_s,
                   MIN(CASE WHEN seg.before IS NULL THEN seg.b END) AS opened_b
            FROM seg JOIN _rpt_fact f ON f.id = seg.id
            JOIN _rpt_target t ON t.priority = f.priority
            GROUP BY seg.id, seg.cal, t.resolution_s
        ),
        resp AS (
            SELECT f.id, t.response_s, COALESCE(f.responded_s, :as_of) AS moment,
                   CASE WHEN f.responded_s IS NULL THEN t.asof_b
                        ELSE {_business(conn, "t.cal", "f.responded_s")} END - per.opened_b
                       AS used,
                   t.cal
            FROM _rpt_fact f JOIN _rpt_target t ON t.priority = f.priority
            JOIN per ON per.id = f.id
        ),
        status AS (
            SELECT f.id, f.month, f.priority,
                   CASE WHEN resp.used > resp.response_s + :tol THEN 'breached'
                        WHEN resp.used >= resp.response_s - :tol
                             AND NOT {_in_open("resp.cal", "resp.moment")} THEN 'breached'
                        WHEN f.responded_s IS NOT NULL THEN 'met'
                        ELSE 'pending' END AS response,
                   CASE WHEN per.elapsed > per.resolution_s + :tol THEN 'breached'
                        WHEN per.elapsed >= per.resolution_s - :tol
                             AND (per.final_state = 'paused' OR per.before_final = 'paused'
                                  OR NOT {_in_open("per.cal", "COALESCE(per.resolved_s, :as_of)")})
                             THEN 'breached'
                        WHEN per.final_state = 'resolved' THEN 'met'
                        ELSE 'pending' END AS resolution
            FROM _rpt_fact f
            JOIN per ON per.id = f.id
            JOIN resp ON resp.id = f.id
        )
    """


def sla_months(
    conn: ReportConnection, policy: SlaPolicy, months: list[Period], as_of: datetime
) -> list[SlaMonth]:
    """Response and resolution compliance per month (and priority) under `policy`."""
    _load_policy(conn, policy, months[0].start, as_of)
    as_of_s = epoch(as_of)
    rows = conn.execute(
        f"""
        {_status_sql(conn)}
        SELECT month, priority,
               COUNT(*) FILTER (WHERE response = 'met'),
               COUNT(*) FILTER (WHERE response = 'breached'),
               COUNT(*) FILTER (WHERE response = 'pending'),
               COUNT(*) FILTER (WHERE resolution = 'met'),
               COUNT(*) FILTER (WHERE resolution = 'breached'),
               COUNT(*) FILTER (WHERE resolution = 'pending')
        FROM status GROUP BY month, priority
        """,
        {"as_of": as_of_s, "tol": _TOLERANCE},
    )
    per_month: dict[int, dict[str, dict[str, Compliance]]] = {}
    for month, priority, r_met, r_br, r_pe, s_met, s_br, s_pe in rows:
        per_month.setdefault(month, {})[priority] = {
            "response": Compliance(met=r_met, breached=r_br, pending=r_pe),
            "resolution": Compliance(met=s_met, breached=s_br, pending=s_pe),
        }
    result = []
    for index in range(len(months)):
        by_priority = per_month.get(index, {})
        result.append(
            SlaMonth(
                response=_total(by_priority, "response"),
                resolution=_total(by_priority, "resolution"),
                by_priority=by_priority,
            )
        )
    return result


def _total(by_priority: dict[str, dict[str, Compliance]], which: str) -> Compliance:
    parts = [figures[which] for figures in by_priority.values()]
    return Compliance(
        met=sum(p.met for p in parts),
        breached=sum(p.breached for p in parts),
        pending=sum(p.pending for p in parts),
    )
