"""The report's proactive section: notices raised, accepted, declined, not needed and expired,
each in the month it happened (report.yaml's zone), only what is known at `now`; rendered in the
report's HTML."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from itilflow.models import ProactiveNotice, session_scope
from itilflow.policies import Policies
from itilflow.reports.compute import compute_report
from itilflow.reports.render import render_html

OCT = datetime(2026, 10, 10, 4, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 2, 4, 0, tzinfo=UTC)


def notice(n: int, *, created: datetime, status: str = "proposed", **more) -> ProactiveNotice:
    return ProactiveNotice(
        ci_name=f"ci-{n}",
        kind="disk_fill",
        item="/srv",
        target="t",
        check_name="node.filesystem_fill",
        predicted_at=created + timedelta(days=3),
        proposed_start=created + timedelta(hours=8),
        proposed_end=created + timedelta(hours=10),
        time_zone="Asia/Shanghai",
        template="add-disk-space",
        status=status,
        created_at=created,
        updated_at=created,
        **more,
    )


def test_notices_count_in_the_month_they_were_raised_decided_or_ended(
    engine: Engine, policies: Policies
) -> None:
    with session_scope(engine) as session:
        session.add_all(
            [
                notice(1, created=OCT, status="accepted", decided_at=OCT + timedelta(hours=2)),
                notice(2, created=OCT, status="declined", decided_at=OCT + timedelta(days=1)),
                notice(3, created=OCT, status="not_needed", cleared_at=OCT + timedelta(days=2)),
                notice(4, created=OCT, status="expired", cleared_at=OCT + timedelta(days=3)),
                # Raised in September, accepted in October: raised counts in September.
                notice(
                    5,
                    created=OCT - timedelta(days=20),
                    status="accepted",
                    decided_at=OCT,
                ),
                notice(6, created=OCT, status="superseded", cleared_at=OCT + timedelta(days=1)),
                # Made after the report's moment: not known yet.
                notice(7, created=NOW + timedelta(hours=1)),
            ]
        )
    report = compute_report(engine, policies, period="2026-10", now=NOW)
    section = report.section("proactive")
    assert section.status == "ok"
    october = section.data.months[-1]  # type: ignore[union-attr]
    assert (october.month, october.raised, october.accepted, october.declined) == (
        "2026-10",
        5,
        2,
        1,
    )
    assert (october.not_needed, october.expired) == (1, 1)
    assert section.data.months[-2].raised == 1  # type: ignore[union-attr]
    html = render_html(report, "en")
    assert "Proactive notices" in html and "Accepted (change requested)" in html
    assert "主动通知" in render_html(report, "zh_CN")
