"""The change, problem and inspection sections: a small generated history with known answers
(month boundaries in Asia/Shanghai, report.yaml's default), an empty month, and both languages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from itilflow.models import (
    Change,
    ChangeStatus,
    CheckResult,
    InspectionRun,
    Problem,
    ProblemEntry,
    ProblemStatus,
    session_scope,
)
from itilflow.reports import compute_report, render_html, render_markdown
from itilflow.reports.figures import (
    ChangeCounts,
    ChangeSection,
    FailingTarget,
    InspectionSection,
    ProblemMonth,
    ProblemSection,
)
from tests.reports.dataset import NOW

MONTHS = ["2026-04", "2026-05", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10"]
# October 2026 in Shanghai: [09-30 16:00 UTC, 10-31 16:00 UTC).
OCT_START = datetime(2026, 9, 30, 16, tzinfo=UTC)
OCT_END = datetime(2026, 10, 31, 16, tzinfo=UTC)
US = timedelta(microseconds=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# (category, status, updated_at): the month a change counts in is worked out next to it.
CHANGES = [
    ("normal", ChangeStatus.successful, utc(2026, 10, 5)),  # Oct
    ("normal", ChangeStatus.rolled_back, utc(2026, 10, 10)),  # Oct
    ("emergency", ChangeStatus.successful, OCT_END - US),  # Oct (last microsecond)
    ("emergency", ChangeStatus.rollback_failed, OCT_START),  # Oct (first instant)
    ("standard", ChangeStatus.backup_failed, utc(2026, 10, 12)),  # Oct
    ("standard", ChangeStatus.successful, utc(2026, 10, 20)),  # Oct
    ("pilot", ChangeStatus.successful, utc(2026, 10, 7)),  # Oct, a category of its own
    ("normal", ChangeStatus.rejected, utc(2026, 10, 3)),  # Oct, not implemented
    ("normal", ChangeStatus.cancelled, utc(2026, 10, 4)),  # Oct, not implemented
    ("normal", ChangeStatus.expired, utc(2026, 7, 4)),  # Jul, not implemented
    ("normal", ChangeStatus.implementing, utc(2026, 10, 6)),  # under way: nowhere
    ("normal", ChangeStatus.crashed, utc(2026, 10, 6)),  # someone must look: nowhere
    ("normal", ChangeStatus.successful, OCT_END),  # November in Shanghai: nowhere
    ("normal", ChangeStatus.successful, OCT_START - US),  # Sep (last microsecond)
    ("emergency", ChangeStatus.rolled_back, utc(2026, 8, 20)),  # Aug
]

# (created_at, closed_at, known_error entries): opened / closed / first known error month.
PROBLEMS = [
    (utc(2026, 10, 2), utc(2026, 10, 20), [utc(2026, 10, 5), utc(2026, 10, 8)]),  # O / O / O
    (utc(2026, 9, 15), None, [utc(2026, 10, 1, 3)]),  # S / - / O
    (OCT_START + timedelta(minutes=30), None, []),  # O (00:30 local on Oct 1) / - / -
    (utc(2026, 8, 10), OCT_END - timedelta(hours=1), []),  # A / O / -
    (OCT_END + timedelta(hours=1), None, []),  # November: nowhere
    (utc(2026, 9, 1), None, [utc(2026, 9, 20), utc(2026, 10, 10)]),  # S / - / S (first)
    (utc(2026, 10, 25), None, [NOW + timedelta(days=1)]),  # O / - / after the report: -
]

# (target, status, at): October unless said otherwise.
OCT = utc(2026, 10, 15)
RESULTS = [
    *[("web1", "ok", OCT)] * 3,
    ("web1", "warning", OCT),
    *[("db1", "critical", OCT)] * 2,
    ("db1", "error", OCT),
    ("db1", "ok", OCT),
    *[("app1", "warning", OCT)] * 2,
    ("cache1", "ok", OCT),
    ("cache1", "ok", OCT_START),  # first instant of October
    ("mq1", "error", OCT),
    ("dns1", "warning", OCT_END - US),  # last microsecond of October
    ("lb1", "critical", OCT),
    ("lb1", "ok", OCT),
    ("zz-sep", "critical", OCT_START - US),  # September
    ("zz-sep", "ok", utc(2026, 9, 10)),  # September
    ("nov", "error", OCT_END),  # November: nowhere
]


def load_processes(engine: Engine) -> None:
    with session_scope(engine) as session:
        for number, (category, status, at) in enumerate(CHANGES):
            session.add(
                Change(
                    title=f"change {number}",
                    category=category,
                    status=status,
                    created_at=at - timedelta(days=3),
                    updated_at=at,
                )
            )
        for number, (created, closed, known) in enumerate(PROBLEMS):
            problem = Problem(
                title=f"problem {number}",
                match_kind="ci",
                match_value=f"ci-{number}",
                status=ProblemStatus.closed if closed else ProblemStatus.investigating,
                known_error=bool(known),
                created_at=created,
                updated_at=closed or created,
                closed_at=closed,
            )
            session.add(problem)
            session.flush()
            assert problem.id is not None
            for at in known:
                session.add(
                    ProblemEntry(problem_id=problem.id, at=at, actor="test", kind="known_error")
                )
            session.add(ProblemEntry(problem_id=problem.id, at=created, actor="t", kind="opened"))
        run = InspectionRun(group="all", started_at=utc(2026, 9, 1))
        session.add(run)
        session.flush()
        assert run.id is not None
        for target, status, at in RESULTS:
            session.add(
                CheckResult(
                    run_id=run.id,
                    target=target,
                    check_name="http",
                    check_type="http",
                    status=status,
                    at=at,
                )
            )


@pytest.fixture
def report(engine, policies):
    load_processes(engine)
    return compute_report(engine, policies, period="2026-10", now=NOW)


def test_changes(report) -> None:
    section = report.section("changes").data
    assert isinstance(section, ChangeSection)
    months = section.months
    assert [m.month for m in months] == MONTHS
    assert [m.changes for m in months] == [0, 0, 0, 0, 1, 1, 7]
    assert [m.not_implemented for m in months] == [0, 0, 0, 1, 0, 0, 2]
    october = section.current
    assert (october.successful, october.rolled_back, october.rollback_failed) == (4, 1, 1)
    assert (october.backup_failed, october.emergency) == (1, 2)
    assert october.success_rate == 4 / 7
    assert october.rollback_rate == 2 / 7
    assert october.emergency_rate == 2 / 7
    assert list(october.by_category) == ["standard", "normal", "emergency", "pilot"]
    assert october.by_category == {
        "standard": ChangeCounts(changes=2, successful=1, backup_failed=1),
        "normal": ChangeCounts(changes=2, successful=1, rolled_back=1),
        "emergency": ChangeCounts(changes=2, successful=1, rollback_failed=1, emergency=2),
        "pilot": ChangeCounts(changes=1, successful=1),
    }
    assert october.by_category["emergency"].rollback_rate == 0.5
    assert october.by_category["emergency"].emergency_rate == 1.0
    september, august, july = months[5], months[4], months[3]
    assert september.by_category["normal"] == ChangeCounts(changes=1, successful=1)
    assert (september.success_rate, september.rollback_rate, september.emergency_rate) == (
        1.0,
        0.0,
        0.0,
    )
    assert august.by_category["emergency"] == ChangeCounts(changes=1, rolled_back=1, emergency=1)
    assert (august.success_rate, august.rollback_rate, august.emergency_rate) == (0.0, 1.0, 1.0)
    # Only closed without implementation: no rates.
    assert july.changes == 0 and july.success_rate is None and july.rollback_rate is None
    assert months[0].by_category["pilot"] == ChangeCounts()


def test_problems(report) -> None:
    section = report.section("problems").data
    assert isinstance(section, ProblemSection)
    assert [(m.opened, m.closed, m.known_errors) for m in section.months] == [
        (0, 0, 0),
        (0, 0, 0),
        (0, 0, 0),
        (0, 0, 0),
        (1, 0, 0),
        (2, 0, 1),
        (3, 2, 2),
    ]
    assert section.current == ProblemMonth(month="2026-10", opened=3, closed=2, known_errors=2)


def test_inspections(report) -> None:
    section = report.section("inspections").data
    assert isinstance(section, InspectionSection)
    october = section.current
    assert (october.results, october.ok, october.warning, october.critical, october.error) == (
        16,
        7,
        4,
        3,
        2,
    )
    assert october.failing == 9
    assert october.pass_rate == 7 / 16
    september = section.months[5]
    assert (september.results, september.ok, september.pass_rate) == (2, 1, 0.5)
    assert [m.results for m in section.months] == [0, 0, 0, 0, 0, 2, 16]
    assert [m.pass_rate for m in section.months[:5]] == [None] * 5
    # The most non-ok results first, ties by name; web1 (1) is sixth, cache1 never failed.
    assert section.failing_targets == [
        FailingTarget(target="db1", results=4, ok=1, critical=2, error=1),
        FailingTarget(target="app1", results=2, warning=2),
        FailingTarget(target="dns1", results=1, warning=1),
        FailingTarget(target="lb1", results=2, ok=1, critical=1),
        FailingTarget(target="mq1", results=1, error=1),
    ]
    assert [t.failing for t in section.failing_targets] == [3, 2, 1, 1, 1]
    assert section.failing_targets[0].pass_rate == 0.25


def test_an_empty_month(engine, policies) -> None:
    load_processes(engine)
    report = compute_report(engine, policies, period="2027-02", now=utc(2027, 3, 2))
    changes = report.section("changes").data
    problems = report.section("problems").data
    inspections = report.section("inspections").data
    assert isinstance(changes, ChangeSection)
    assert isinstance(problems, ProblemSection)
    assert isinstance(inspections, InspectionSection)
    # 2026-08 .. 2027-02: the history's last months are in the window, February is empty.
    assert [m.changes for m in changes.months] == [1, 1, 7, 1, 0, 0, 0]
    empty = changes.current
    assert (empty.changes, empty.not_implemented) == (0, 0)
    assert (empty.success_rate, empty.rollback_rate, empty.emergency_rate) == (None, None, None)
    assert empty.by_category["normal"] == ChangeCounts()
    assert problems.current == ProblemMonth(month="2027-02")
    assert (inspections.current.results, inspections.current.pass_rate) == (0, None)
    assert inspections.failing_targets == []
    # the known error marked on 2026-11-24 (after the first report) counts in November now
    assert [m.known_errors for m in problems.months] == [0, 1, 2, 1, 0, 0, 0]
    for language, nothing in (("en", "Every check passed"), ("zh_CN", "所有检查均通过")):
        assert nothing in render_html(report, language)


def test_an_empty_database(engine, policies) -> None:
    report = compute_report(engine, policies, period="2026-10", now=NOW)
    for key in ("changes", "problems", "inspections"):
        section = report.section(key)
        assert section.status == "ok"
        assert len(section.data.months) == 7  # type: ignore[union-attr]
    assert report.section("changes").data.current.changes == 0  # type: ignore[union-attr]


def test_rendered_in_both_languages(report) -> None:
    english = render_html(report, "en")
    assert "<h2>Changes</h2>" in english and "<h2>Inspections</h2>" in english
    assert "Changes implemented" in english and "57.1%" in english  # 4 of 7 successful
    assert "28.6%" in english  # rollback and emergency rates: 2 of 7
    assert "43.8%" in english  # inspection pass rate: 7 of 16
    assert "<td>db1</td><td>3</td>" in english
    assert "<td>Emergency</td><td>2</td><td>1</td><td>50.0%</td>" in english
    assert "Known errors recorded" in english
    chinese = render_html(report, "zh_CN")
    assert "<h2>变更</h2>" in chinese and "<td>紧急</td><td>2</td>" in chinese
    assert "通过率" in chinese and "43.8%" in chinese and "新增已知错误" in chinese
    for html in (english, chinese):
        assert "<td>pilot</td><td>1</td><td>1</td><td>100.0%</td>" in html
    assert "No data" not in render_markdown(report, "en", {})


def test_values_from_the_database_are_escaped(engine, policies) -> None:
    with session_scope(engine) as session:
        run = InspectionRun(group="g")
        session.add(run)
        session.flush()
        assert run.id is not None
        session.add(
            CheckResult(
                run_id=run.id,
                target="<script>x</script>",
                check_name="http",
                check_type="http",
                status="error",
                at=utc(2026, 10, 3),
            )
        )
        session.add(
            Change(
                title="c", category="<b>odd</b>", status="successful", updated_at=utc(2026, 10, 3)
            )
        )
    report = compute_report(engine, policies, period="2026-10", now=NOW)
    for language in ("en", "zh_CN"):
        html = render_html(report, language)
        assert "<script>x" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
        assert "<b>odd" not in html and "&lt;b&gt;odd&lt;/b&gt;" in html
