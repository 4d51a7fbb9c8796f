"""The change, problem and inspection figures of a report, by SQL aggregation.

Every figure is counted per report month (midnight to midnight in report.yaml's time zone, the
`_rpt_month` TEMP table), for the report month and the `compare_months` before it, and only rows
known when the report is made (timestamps up to `as_of`) count:

- Changes: a change counts in the month its implementation finished, i.e. the month of its
  `updated_at` while its status is one of the implementation outcomes `successful`,
  `rolled_back`, `rollback_failed`, `backup_failed` (recording the outcome is the last write to a
  change, so `updated_at` is that moment). Success rate: successful / those changes; rollback
  rate: (rolled_back + rollback_failed) / those changes; emergency rate: category `emergency` /
  those changes. A backup failure counts as implemented and not successful. Changes closed
  without implementation (rejected, refused, expired, cancelled) are shown apart
  (`not_implemented`, same month rule) and are in none of the rates; changes still under way or
  `crashed` (someone must look) count nowhere yet.
- Problems: opened = `created_at` in the month; closed = `closed_at` in the month; known errors =
  problems first marked a known error in the month (the first `known_error` entry of the problem's
  timeline: the flag itself says nothing about when).
- Inspections: check results whose `at` is in the month; pass rate = `ok` results / all results
  (warning, critical and error are all "not ok"). The most failing targets are the report month's
  targets with the most non-ok results (then by name), at most 5.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from itilflow.models import Change, ChangeStatus, CheckResult, Problem, ProblemEntry
from itilflow.reports.db import ReportConnection
from itilflow.reports.figures import (
    ChangeCounts,
    ChangeMonth,
    ChangeSection,
    FailingTarget,
    InspectionMonth,
    InspectionSection,
    ProblemMonth,
    ProblemSection,
)
from itilflow.reports.period import Period

CHANGE = Change.__tablename__
PROBLEM = Problem.__tablename__
PROBLEM_ENTRY = ProblemEntry.__tablename__
CHECK_RESULT = CheckResult.__tablename__

IMPLEMENTED = (
    ChangeStatus.successful,
    ChangeStatus.rolled_back,
    ChangeStatus.rollback_failed,
    ChangeStatus.backup_failed,
)
NOT_IMPLEMENTED = (
    ChangeStatus.rejected,
    ChangeStatus.refused,
    ChangeStatus.expired,
    ChangeStatus.cancelled,
)
CHANGE_CATEGORIES = ("standard", "normal", "emergency")
TOP_FAILING = 5


def _values(statuses: tuple[ChangeStatus, ...]) -> str:
    # Enum values are fixed identifiers of ours, not data: safe to inline.
    return ", ".join(f"'{status.value}'" for status in statuses)


def compute_change_section(
    conn: ReportConnection, months: list[Period], as_of: datetime
) -> ChangeSection:
    rows = conn.execute(
        f"""
        WITH c AS (
            SELECT m.idx AS month, c.category, c.status
            FROM _rpt_month m
            JOIN "{CHANGE}" c ON c.updated_at >= m.start_at AND c.updated_at < m.end_at
            WHERE c.updated_at <= :as_of
              AND c.status IN ({_values(IMPLEMENTED)}, {_values(NOT_IMPLEMENTED)})
        )
        SELECT month, category,
               COUNT(*) FILTER (WHERE status IN ({_values(IMPLEMENTED)})),
               COUNT(*) FILTER (WHERE status = 'successful'),
               COUNT(*) FILTER (WHERE status = 'rolled_back'),
               COUNT(*) FILTER (WHERE status = 'rollback_failed'),
               COUNT(*) FILTER (WHERE status = 'backup_failed'),
               COUNT(*) FILTER (WHERE status IN ({_values(IMPLEMENTED)})
                                AND category = 'emergency'),
               COUNT(*) FILTER (WHERE status IN ({_values(NOT_IMPLEMENTED)}))
        FROM c GROUP BY month, category
        """,
        {"as_of": conn.time(as_of)},
    )
    per_month: dict[int, dict[str, tuple[int, ...]]] = {}
    for month, category, *counts in rows:
        per_month.setdefault(month, {})[category or "(none)"] = tuple(counts)
    found = sorted({name for categories in per_month.values() for name in categories})
    names = [*CHANGE_CATEGORIES, *(n for n in found if n not in CHANGE_CATEGORIES)]
    result = []
    for index, month in enumerate(months):
        by_category: dict[str, ChangeCounts] = {}
        total = [0] * 7
        for name in names:
            counts = per_month.get(index, {}).get(name, (0,) * 7)
            total = [a + b for a, b in zip(total, counts, strict=True)]
            by_category[name] = ChangeCounts(**_fields(counts))
        result.append(
            ChangeMonth(
                month=month.key,
                **_fields(total),
                not_implemented=total[6],
                by_category=by_category,
            )
        )
    return ChangeSection(months=result)


_CHANGE_FIELDS = (
    "changes",
    "successful",
    "rolled_back",
    "rollback_failed",
    "backup_failed",
    "emergency",
)


def _fields(counts: Sequence[int]) -> dict[str, int]:
    """The ChangeCounts fields of a query row's counts (the 7th, not_implemented, aside)."""
    return dict(zip(_CHANGE_FIELDS, counts[:6], strict=True))


def compute_problem_section(
    conn: ReportConnection, months: list[Period], as_of: datetime
) -> ProblemSection:
    rows = conn.execute(
        f"""
        WITH events AS (
            SELECT created_at AS at, 'opened' AS kind FROM "{PROBLEM}"
            UNION ALL
            SELECT closed_at, 'closed' FROM "{PROBLEM}" WHERE closed_at IS NOT NULL
            UNION ALL
            SELECT MIN(at), 'known_error' FROM "{PROBLEM_ENTRY}"
            WHERE kind = 'known_error' AND at <= :as_of GROUP BY problem_id
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
    return ProblemSection(
        months=[
            ProblemMonth(
                month=month.key,
                opened=counts.get(index, {}).get("opened", 0),
                closed=counts.get(index, {}).get("closed", 0),
                known_errors=counts.get(index, {}).get("known_error", 0),
            )
            for index, month in enumerate(months)
        ]
    )


_STATUS_COUNTS = (
    "COUNT(*), COUNT(*) FILTER (WHERE r.status = 'ok'), "
    "COUNT(*) FILTER (WHERE r.status = 'warning'), "
    "COUNT(*) FILTER (WHERE r.status = 'critical'), COUNT(*) FILTER (WHERE r.status = 'error')"
)


def compute_inspection_section(
    conn: ReportConnection, months: list[Period], as_of: datetime
) -> InspectionSection:
    as_of_at = conn.time(as_of)
    per_month = {
        row[0]: row[1:]
        for row in conn.execute(
            f"""
            SELECT m.idx, {_STATUS_COUNTS}
            FROM _rpt_month m
            JOIN "{CHECK_RESULT}" r ON r.at >= m.start_at AND r.at < m.end_at
            WHERE r.at <= :as_of
            GROUP BY m.idx
            """,
            {"as_of": as_of_at},
        )
    }
    top = conn.execute(
        f"""
        SELECT r.target, {_STATUS_COUNTS}
        FROM "{CHECK_RESULT}" r
        WHERE r.at >= :start AND r.at < :end AND r.at <= :as_of
        GROUP BY r.target
        HAVING COUNT(*) > COUNT(*) FILTER (WHERE r.status = 'ok')
        ORDER BY COUNT(*) - COUNT(*) FILTER (WHERE r.status = 'ok') DESC, r.target
        LIMIT :top
        """,
        {
            "start": conn.time(months[-1].start),
            "end": conn.time(months[-1].end),
            "as_of": as_of_at,
            "top": TOP_FAILING,
        },
    )
    result = []
    for index, month in enumerate(months):
        results, ok, warning, critical, error = per_month.get(index, (0, 0, 0, 0, 0))
        result.append(
            InspectionMonth(
                month=month.key,
                results=results,
                ok=ok,
                warning=warning,
                critical=critical,
                error=error,
            )
        )
    return InspectionSection(
        months=result,
        failing_targets=[
            FailingTarget(
                target=target,
                results=results,
                ok=ok,
                warning=warning,
                critical=critical,
                error=error,
            )
            for target, results, ok, warning, critical, error in top
        ],
    )
