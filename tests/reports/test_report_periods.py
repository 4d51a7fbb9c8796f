"""Periods (month, quarter, year), which way each figure is worse, the summary's choice, and
the charts' sizes and axes: the pure decisions, no database."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from itilflow.reports import charts
from itilflow.reports.period import latest_complete, parse_period, report_months, span_of
from itilflow.reports.trends import TRENDS, Trend, judge

SHANGHAI = ZoneInfo("Asia/Shanghai")
TEMPLATE = Path(charts.__file__).parent / "templates" / "_base" / "report.html"


def test_quarters_and_years_in_the_time_zone() -> None:
    quarter = parse_period("2026-Q3", SHANGHAI)
    assert (quarter.span, quarter.key) == ("quarter", "2026-Q3")
    assert quarter.start == datetime(2026, 6, 30, 16, tzinfo=UTC)  # 1 July 00:00 in Shanghai
    assert quarter.end == datetime(2026, 9, 30, 16, tzinfo=UTC)
    assert [p.key for p in report_months(quarter, 4)] == [
        "2025-Q3",
        "2025-Q4",
        "2026-Q1",
        "2026-Q2",
        "2026-Q3",
    ]
    year = parse_period("2026", SHANGHAI)
    assert (year.start, year.end) == (
        datetime(2025, 12, 31, 16, tzinfo=UTC),
        datetime(2026, 12, 31, 16, tzinfo=UTC),
    )
    assert [p.key for p in report_months(year, 2)] == ["2024", "2025", "2026"]
    assert parse_period("2026-Q1", SHANGHAI).previous().key == "2025-Q4"
    assert parse_period("2026-12", SHANGHAI).next().key == "2027-01"
    assert [span_of(p) for p in ("2026-10", "2026-Q3", "2026")] == ["month", "quarter", "year"]


def test_the_scheduled_run_reports_the_period_just_ended() -> None:
    # 1 October 08:00 in Shanghai (00:00 UTC): the quarter and month just ended.
    first_of_october = datetime(2026, 10, 1, 0, tzinfo=UTC)
    assert latest_complete(first_of_october, SHANGHAI, "quarter").key == "2026-Q3"
    assert latest_complete(first_of_october, SHANGHAI, "month").key == "2026-09"
    # 31 December 20:00 UTC is 1 January 04:00 in Shanghai: 2026 is over there.
    assert latest_complete(datetime(2026, 12, 31, 20, tzinfo=UTC), SHANGHAI, "year").key == "2026"
    assert latest_complete(datetime(2026, 12, 31, 15, tzinfo=UTC), SHANGHAI, "year").key == "2025"


@pytest.mark.parametrize("bad", ["2026-13", "2026-Q5", "2026-Q0", "26", "2026-3", "Q3 2026", ""])
def test_anything_else_is_refused_saying_what_a_period_is(bad: str) -> None:
    with pytest.raises(ValueError, match=r"expected a month \(YYYY-MM, e.g. 2026-10\), a quarter"):
        parse_period(bad, SHANGHAI)


def by_label(section: str, label: str) -> Trend:
    return next(t for t in TRENDS[section] if t.label == label)


def test_which_way_is_worse_per_figure() -> None:
    compliance = by_label("incidents", "resolution_compliance")
    mttr = by_label("incidents", "mttr_median")
    answers = by_label("incidents", "csat_responses")
    # A quarter is compared with the previous quarter.
    assert judge(compliance, [0.96, 0.90], "quarter").verdict == "worse"
    assert judge(compliance, [0.90, 0.96], "quarter").verdict == "better"
    assert judge(mttr, [7200, 10800], "quarter").verdict == "worse"
    assert judge(mttr, [10800, 7200], "quarter").verdict == "better"
    assert judge(answers, [10, 30], "quarter").verdict is None  # volume: not judged
    # Noise is not flagged: under one point for a rate, under 5 % otherwise.
    assert judge(compliance, [0.960, 0.955], "quarter").verdict == "same"
    assert judge(mttr, [7200, 7400], "quarter").verdict == "same"
    # A month is compared with the average of the earlier months, as the report always did.
    delta = judge(compliance, [0.98, None, 0.94, 0.89], "month")
    assert delta.reference == pytest.approx(0.96)
    assert delta.change == pytest.approx(-0.07) and delta.verdict == "worse"
    # Nothing to compare with: no verdict.
    assert judge(compliance, [None, 0.9], "quarter").verdict is None
    assert judge(compliance, [0.9], "year").verdict is None


def test_a_quarter_is_also_compared_with_the_same_quarter_a_year_before() -> None:
    mttr = by_label("incidents", "mttr_median")
    delta = judge(mttr, [3600, 5400, 5400, 7200, 10800], "quarter")
    assert (delta.reference, delta.change) == (7200, 3600)
    assert (delta.year_ago, delta.year_ago_change) == (3600, 7200)
    assert judge(mttr, [7200, 10800], "quarter").year_ago is None


def test_an_sla_between_89_and_98_percent_is_not_drawn_on_a_0_to_100_axis() -> None:
    low, high, step = charts.axis_range([0.89, 0.93, 0.98, 0.95], ceiling=1.0)
    assert 0.8 <= low <= 0.89 and 0.98 < high <= 1.0
    assert (0.89 - low) / (high - low) > 0.02, "a margin below the lowest value"
    # On the chart, 89 % and 98 % are most of the plot's height apart (on 0-100 % they were 9 %).
    span = (0.98 - 0.89) / (high - low)
    assert span > 0.5
    svg = charts.line_chart(
        ["2026-Q1", "2026-Q2", "2026-Q3"],
        [("Resolution", [0.89, 0.98, 0.93])],
        title="t",
        fmt=charts.percent,
        top=1.0,
        zero_note="axis not from 0",
    )
    ticks = [int(t) for t in re.findall(r">(\d+)%</text>", svg)]
    assert min(ticks) > 0 and min(ticks) == round(low * 100)
    assert "axis not from 0" in svg and 'stroke="#c00"' in svg  # the break mark
    # Bars start at zero whatever the data (a bar's length is its value).
    assert charts.axis_range([0.89, 0.98], ceiling=1.0, from_zero=True)[0] == 0.0
    # Data near zero anyway: from zero, no break mark.
    assert charts.axis_range([0.1, 0.9])[0] == 0.0


def test_chart_text_is_at_least_7_pt_on_paper() -> None:
    svgs = [
        charts.line_chart(["2026-09", "2026-10"], [("a", [1.0, 2.0])], title="t"),
        charts.bar_chart(["P1", "P2"], [("a", [0.5, 1.0])], title="t", fmt=charts.percent),
        charts.stacked_bars(["2026-09", "2026-10"], [("P1", [1, 2])], title="t"),
    ]
    for svg in svgs:
        width_pt = float(re.search(r'<svg[^>]* width="([\d.]+)pt"', svg).group(1))
        viewbox_width = float(re.search(r'viewBox="0 0 ([\d.]+) ', svg).group(1))
        scale = width_pt / viewbox_width  # points per unit
        sizes = [float(s) for s in re.findall(r'font-size="([\d.]+)"', svg)]
        assert sizes and min(sizes) * scale >= 7, (min(sizes), scale)
    # ... and the stylesheet draws them at that size: it gives the SVG no other width or height.
    css = TEMPLATE.read_text(encoding="utf-8")
    rules = re.findall(r"([^{}]*svg[^{}]*)\{([^}]*)\}", css)
    assert rules
    for _, body in rules:
        assert not re.search(r"(^|[;\s])(max-)?(width|height)\s*:", body), body
    # Half of the A4 text column (210 mm - 2 x 12 mm margins) holds a chart.
    assert charts.WIDTH <= (210 - 24) / 25.4 * 72 * 0.49
