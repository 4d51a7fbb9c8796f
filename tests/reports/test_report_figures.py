"""Every incident figure of a known history, exactly; month boundaries; empty months; what-if."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine

from itilflow.policies import Policies, PolicyError
from itilflow.reports import (
    Compliance,
    DurationStats,
    compute_report,
    parse_period,
    previous_month,
    render_html,
    report_months,
)
from tests.reports.dataset import NOW

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONTHS = ["2026-04", "2026-05", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10"]
OCTOBER = 31 * 86400
SEPTEMBER = 30 * 86400
AUGUST = 31 * 86400


def october(engine: Engine, policies: Policies, **kwargs):
    return compute_report(engine, policies, period="2026-10", now=NOW, **kwargs)


def test_months_are_read_in_the_policy_time_zone() -> None:
    month = parse_period("2026-10", SHANGHAI)
    assert month.start == datetime(2026, 9, 30, 16, tzinfo=UTC)
    assert month.end == datetime(2026, 10, 31, 16, tzinfo=UTC)
    assert [m.key for m in report_months(month, 6)] == MONTHS
    # 23:30 UTC on the last day of November is already December in Shanghai.
    assert previous_month(datetime(2026, 11, 30, 23, 30, tzinfo=UTC), SHANGHAI).key == "2026-11"
    assert previous_month(datetime(2026, 11, 30, 15, 59, tzinfo=UTC), SHANGHAI).key == "2026-10"
    assert previous_month(datetime(2026, 1, 5, tzinfo=UTC), SHANGHAI).key == "2025-12"
    with pytest.raises(ValueError, match="YYYY-MM"):
        parse_period("2026-13", SHANGHAI)


def test_default_period_is_the_previous_month(engine, history, policies) -> None:
    report = compute_report(engine, policies, period=None, now=NOW)
    assert report.period == "2026-10"
    assert report.months == MONTHS
    assert report.timezone == "Asia/Shanghai"


def test_volumes(engine, history, policies) -> None:
    section = october(engine, policies).incidents
    assert section is not None
    months = section.months
    assert [m.month for m in months] == MONTHS
    assert [m.opened for m in months] == [0, 0, 0, 0, 1, 1, 6]
    # F (09-30 16:30 UTC) counts in October, G (10-31 23:30 UTC) does not.
    assert months[-1].by_priority == {"P1": 3, "P2": 1, "P3": 1, "P4": 0, "unclassified": 1}
    assert [(b.name, b.counts) for b in section.categories] == [
        ("database", [0, 0, 0, 0, 1, 1, 2]),
        ("hardware", [0, 0, 0, 0, 0, 0, 1]),
        ("network", [0, 0, 0, 0, 0, 0, 1]),
        ("software", [0, 0, 0, 0, 0, 0, 1]),
        (None, [0, 0, 0, 0, 0, 0, 1]),
    ]
    assert [(b.name, b.counts) for b in section.cis] == [
        ("db1", [0, 0, 0, 0, 1, 1, 2]),
        ("app1", [0, 0, 0, 0, 0, 0, 1]),
        ("srv1", [0, 0, 0, 0, 0, 0, 1]),
        ("sw1", [0, 0, 0, 0, 0, 0, 1]),
        (None, [0, 0, 0, 0, 0, 0, 1]),
    ]


def test_sla_compliance(engine, history, policies) -> None:
    month = october(engine, policies).incidents.current
    # Response: A, C, F met; B (40m > 30m) and D (never answered) breached.
    assert month.sla.response == Compliance(met=3, breached=2, pending=0)
    # Resolution: A, C (4.5 business hours of 8), F met; B (5h > 4h) and D breached.
    assert month.sla.resolution == Compliance(met=3, breached=2, pending=0)
    assert month.sla.response.rate == 0.6
    by_priority = month.sla.by_priority
    assert by_priority["P1"]["response"] == Compliance(met=2, breached=1)
    assert by_priority["P1"]["resolution"] == Compliance(met=2, breached=1)
    assert by_priority["P2"]["response"] == Compliance(met=1)
    assert by_priority["P2"]["resolution"] == Compliance(met=1)
    assert by_priority["P3"]["response"] == Compliance(breached=1)
    assert by_priority["P3"]["resolution"] == Compliance(breached=1)
    assert set(by_priority) == {"P1", "P2", "P3"}


def test_an_open_incident_within_its_target_is_pending(engine, history, policies) -> None:
    # Made on 10-20 at 13:30 local, D (opened 11:00, 4 business hours to respond) is pending.
    now = datetime(2026, 10, 20, 5, 30, tzinfo=UTC)
    month = compute_report(engine, policies, period="2026-10", now=now).incidents.current
    assert month.sla.by_priority["P3"]["response"] == Compliance(pending=1)
    assert month.sla.by_priority["P3"]["resolution"] == Compliance(pending=1)
    assert month.opened == 5  # A, B, C, D and F; E was opened later


def test_times(engine, history, policies) -> None:
    months = october(engine, policies).incidents.months
    # MTTA of F, A, C, B: 5m, 10m, 15m, 40m; nearest rank: median = 2nd, p90 = 4th.
    assert months[-1].mtta == DurationStats(count=4, median=600, p90=2400)
    # MTTR of F, A, B, C (to its last resolution): 1h, 2h, 5h, 25.5h.
    assert months[-1].mttr == DurationStats(count=4, median=7200, p90=91800)
    assert months[-2].mtta == DurationStats(count=1, median=1800, p90=1800)
    assert months[-3].mttr == DurationStats(count=1, median=10800, p90=10800)
    assert months[0].mtta == DurationStats()


def test_first_contact_reopen_escalation_and_satisfaction(engine, history, policies) -> None:
    months = october(engine, policies).incidents.months
    october_, september, august = months[-1], months[-2], months[-3]
    assert october_.resolved == 4
    assert october_.first_contact == 2  # A and F; B escalated to a lead, C reopened
    assert october_.first_contact_rate == 0.5
    assert (october_.ever_resolved, october_.reopened, october_.reopen_rate) == (4, 1, 0.25)
    assert october_.escalated_incidents == 1
    assert october_.escalations == 2
    assert october_.hierarchical_escalations == 1
    assert october_.csat_responses == 3
    assert october_.csat_average == pytest.approx(11 / 3)
    assert october_.csat_distribution == {1: 0, 2: 1, 3: 0, 4: 1, 5: 1}
    assert (september.first_contact, september.first_contact_rate) == (1, 1.0)
    assert (august.first_contact, august.resolved) == (0, 1)  # I was reassigned


def test_availability(engine, history, policies) -> None:
    rows = {row.ci: row for row in october(engine, policies).incidents.availability}
    assert list(rows) == ["sw1", "db1", "srv1"]  # least available first
    # db1: A 01:00-03:00 and B 02:00-07:00 overlap: 6h down, not 7h.
    assert rows["db1"].downtime == [0, 0, 0, 0, 3 * 3600, 3 * 3600, 6 * 3600]
    assert rows["db1"].availability[-1] == round(1 - 6 * 3600 / OCTOBER, 6)
    assert rows["db1"].availability[-2] == round(1 - 3 * 3600 / SEPTEMBER, 6)
    assert rows["db1"].availability[-3] == round(1 - 3 * 3600 / AUGUST, 6)
    assert rows["db1"].availability[0] == 1.0
    # sw1: C was down 6.5h (its hold included) and again 2h after the reopen.
    assert rows["sw1"].downtime[-1] == 8.5 * 3600
    # srv1: F's hour only; G's half hour is November's.
    assert rows["srv1"].downtime[-1] == 3600
    assert "app1" not in rows  # P3: not downtime


def test_an_empty_month_and_an_empty_database(engine, history, policies) -> None:
    june = compute_report(engine, policies, period="2026-06", now=NOW).incidents.current
    assert june.opened == 0
    assert june.sla.response == Compliance()
    assert june.sla.response.rate is None
    assert june.mtta == DurationStats()
    assert june.first_contact_rate is None and june.reopen_rate is None
    assert june.csat_average is None
    assert june.csat_distribution == {1: 0, 2: 0, 3: 0, 4: 0, 5: 0}


def test_a_report_on_an_empty_database(engine, policies) -> None:
    report = compute_report(engine, policies, period="2026-10", now=NOW)
    section = report.incidents
    assert [m.opened for m in section.months] == [0] * 7
    assert section.categories == [] and section.cis == [] and section.availability == []


def test_sections_without_tables_show_no_data(engine, history, policies) -> None:
    report = october(engine, policies)
    assert [s.key for s in report.sections] == [
        "incidents",
        "changes",
        "problems",
        "inspections",
        "proactive",
        "callbacks",
    ]
    assert all(s.status == "ok" for s in report.sections)
    # A process not installed here (its table missing): its section says so, the others work.
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE checkresult")
    report = october(engine, policies)
    section = report.section("inspections")
    assert section.status == "no_data"
    assert section.reason == "table checkresult does not exist yet"
    assert section.data is None
    assert report.section("changes").status == "ok"
    assert render_html(report, "en").count('<p class="nodata">No data</p>') == 1


def test_what_if_a_stricter_policy(engine, history, policies, strict_sla: Path) -> None:
    report = october(engine, policies, what_if_policy=strict_sla)
    section = report.incidents
    assert report.what_if_policy == str(strict_sla)
    assert section.what_if is not None
    # Unchanged under the report's own policy ...
    assert section.current.sla.response == Compliance(met=3, breached=2)
    # ... but with P1 at 5m / 1h, A (10m, 2h) breaches; F (5m, 1h exactly) still meets it.
    strict = section.what_if.sla[-1]
    assert strict.by_priority["P1"]["response"] == Compliance(met=1, breached=2)
    assert strict.by_priority["P1"]["resolution"] == Compliance(met=1, breached=2)
    assert strict.response == Compliance(met=2, breached=3)
    assert strict.resolution.rate == 0.4
    # The whole folder works too, and a broken file is named with its key.
    assert october(engine, policies, what_if_policy=strict_sla.parent).incidents.what_if
    strict_sla.write_text(strict_sla.read_text().replace("response: 5m", "response: soon"))
    with pytest.raises(PolicyError, match=r"sla.yaml: targets.P1.response: expected a duration"):
        october(engine, policies, what_if_policy=strict_sla)
