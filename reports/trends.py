"""Which figures a report compares over its periods, which way is worse, and what changed most.

Each section with per-period figures (`data.months`, oldest first) registers its trend rows:
the figure's label (a key of the language's strings), where each period's value is, how it is
shown, and which direction is better. The trend tables, the deterioration flags and the summary
paragraph all read these rows, so a section that registers rows is flagged and summarised too:

    register_trends("callbacks", [Trend("callbacks_opened", "opened", "num", better=None)])

A figure is compared with a reference: for a monthly report the average of the earlier months
(as the report always did); for a quarter or a year the previous period. A quarter is also
compared with the same quarter a year before when the report reaches back that far.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from itilflow.reports.figures import Report
from itilflow.reports.period import PER_YEAR, Span

Kind = Literal["num", "pct", "dur", "avg"]
Better = Literal["higher", "lower"] | None
Verdict = Literal["better", "worse", "same"]

# A change smaller than this is "about the same": one percentage point for a rate, 5 % of the
# reference for a count, a duration or an average (so noise is not flagged).
_MIN_POINTS = 0.01
_MIN_RELATIVE = 0.05


@dataclass(frozen=True)
class Trend:
    label: str
    path: str
    kind: Kind
    better: Better = None


@dataclass(frozen=True)
class Delta:
    """One figure over the report's periods against its reference."""

    trend: Trend
    values: list[float | None]
    reference: float | None
    change: float | None
    # None: the figure is not judged (no direction) or there is nothing to compare with.
    verdict: Verdict | None
    # How large the change is, comparable across figures: percentage points / 10 for a rate,
    # the change relative to the reference otherwise.
    size: float
    year_ago: float | None = None
    year_ago_change: float | None = None

    @property
    def current(self) -> float | None:
        return self.values[-1]


TRENDS: dict[str, list[Trend]] = {}


def register_trends(section: str, trends: Sequence[Trend]) -> None:
    """The trend rows of `section` (replacing any it had), in the order its table shows them."""
    TRENDS[section] = list(trends)


def _value(figures: Any, path: str) -> float | None:
    for name in path.split("."):
        figures = getattr(figures, name, None)
        if figures is None:
            return None
    return float(figures)


def reference(values: Sequence[float | None], span: Span) -> float | None:
    """What the last value is compared with: the average of the earlier months for a monthly
    report (months without a value left out), the previous period otherwise."""
    if span != "month":
        return values[-2] if len(values) > 1 else None
    earlier = [v for v in values[:-1] if v is not None]
    return sum(earlier) / len(earlier) if earlier else None


def judge(trend: Trend, values: Sequence[float | None], span: Span) -> Delta:
    """The figure's change against its reference and whether that is better or worse."""
    base = reference(values, span)
    last = values[-1]
    change = None if base is None or last is None else last - base
    verdict: Verdict | None = None
    size = 0.0
    if change is not None and base is not None:
        if trend.kind == "pct":
            size, notable = abs(change) * 10, abs(change) >= _MIN_POINTS
        else:
            size = abs(change) / abs(base) if base else (1.0 if change else 0.0)
            notable = size >= _MIN_RELATIVE
        if trend.better is not None:
            up_is_good = trend.better == "higher"
            verdict = (
                "same" if not notable else ("better" if (change > 0) == up_is_good else "worse")
            )
    year_ago = year_ago_change = None
    back = PER_YEAR[span]
    if span == "quarter" and len(values) > back:
        year_ago = values[-1 - back]
        if year_ago is not None and last is not None:
            year_ago_change = last - year_ago
    return Delta(trend, list(values), base, change, verdict, size, year_ago, year_ago_change)


def section_deltas(report: Report, key: str) -> list[Delta]:
    """The trend rows of one section of the report, judged; none when it has no data."""
    data = report.section(key).data
    months = getattr(data, "months", None)
    if months is None:
        return []
    deltas = [
        judge(trend, [_value(m, trend.path) for m in months], report.span)
        for trend in TRENDS.get(key, [])
    ]
    back = PER_YEAR[report.span] + 1
    if len(months) >= back and not any(d.values[-back] for d in deltas):
        # Nothing at all a year before (no data yet): nothing to compare with, rather than
        # "+50 against 0".
        deltas = [replace(d, year_ago=None, year_ago_change=None) for d in deltas]
    return deltas


@dataclass(frozen=True)
class Summary:
    worse: list[Delta]
    better: list[Delta]
    # False when the report has no earlier period with a value to compare with.
    comparable: bool


def summarise(report: Report, most: int = 3) -> Summary:
    """The largest deteriorations and improvements over every section's judged figures."""
    deltas = [
        delta
        for section in report.sections
        if section.status == "ok"
        for delta in section_deltas(report, section.key)
    ]
    comparable = any(d.change is not None for d in deltas)
    by_size = sorted(deltas, key=lambda d: -d.size)
    return Summary(
        worse=[d for d in by_size if d.verdict == "worse"][:most],
        better=[d for d in by_size if d.verdict == "better"][:most],
        comparable=comparable,
    )


register_trends(
    "incidents",
    [
        Trend("opened", "opened", "num", "lower"),
        Trend("response_compliance", "sla.response.rate", "pct", "higher"),
        Trend("resolution_compliance", "sla.resolution.rate", "pct", "higher"),
        Trend("mtta_median", "mtta.median", "dur", "lower"),
        Trend("mtta_p90", "mtta.p90", "dur", "lower"),
        Trend("mttr_median", "mttr.median", "dur", "lower"),
        Trend("mttr_p90", "mttr.p90", "dur", "lower"),
        Trend("fcr_rate", "first_contact_rate", "pct", "higher"),
        Trend("reopen_rate", "reopen_rate", "pct", "lower"),
        Trend("escalated_incidents", "escalated_incidents", "num", "lower"),
        Trend("hierarchical", "hierarchical_escalations", "num", "lower"),
        Trend("csat_average", "csat_average", "avg", "higher"),
        Trend("csat_responses", "csat_responses", "num"),
    ],
)
register_trends(
    "changes",
    [
        Trend("changes_implemented", "changes", "num"),
        Trend("change_success_rate", "success_rate", "pct", "higher"),
        Trend("change_rollback_rate", "rollback_rate", "pct", "lower"),
        Trend("change_emergency_rate", "emergency_rate", "pct", "lower"),
        Trend("changes_backup_failed", "backup_failed", "num", "lower"),
        Trend("changes_not_implemented", "not_implemented", "num"),
    ],
)
register_trends(
    "problems",
    [
        Trend("problems_opened", "opened", "num"),
        Trend("problems_closed", "closed", "num"),
        Trend("known_errors", "known_errors", "num"),
    ],
)
register_trends(
    "inspections",
    [
        Trend("check_results", "results", "num"),
        Trend("checks_not_ok", "failing", "num", "lower"),
        Trend("pass_rate", "pass_rate", "pct", "higher"),
    ],
)
