"""`itilflow oncall who|ics|check` on the configured database and the packaged (demo) rotations:
what they print, the API's overrides counted, and refusals with their exit codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar

from itilflow.cli import main
from itilflow.models import Engineer, OnCallOverride, session_scope

CHEN_DAY = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai: chen's day


def itilflow(rt: Any, *args: str) -> int:
    return main(["--data-dir", str(rt.settings.data_dir), *args])


def test_who_names_the_person_on_call_at_the_handoff_minute(rt: Any, capsys: Any) -> None:
    assert itilflow(rt, "oncall", "who", "applications", "--at", "2026-12-07 09:00") == 0
    assert capsys.readouterr().out == (
        "applications at 2026-12-07 09:00 Asia/Shanghai: Chen Jie (chen, chen@example.com), daily\n"
    )
    assert itilflow(rt, "oncall", "who", "applications", "--at", "2026-12-07T00:59Z") == 0
    assert "Liu Yang (liu" in capsys.readouterr().out  # 08:59 in Shanghai


def test_who_counts_the_apis_overrides(rt: Any, capsys: Any) -> None:
    with session_scope(rt.engine) as session:
        session.add(
            OnCallOverride(
                group_name="applications",
                person="lin",
                instead_of="chen",
                starts_at=CHEN_DAY,
                ends_at=CHEN_DAY + timedelta(hours=4),
                created_by="test",
                created_at=CHEN_DAY,
            )
        )
    assert itilflow(rt, "oncall", "who", "applications", "--at", "2026-12-07 10:00") == 0
    out = capsys.readouterr().out
    assert "Lin Na (lin, lin@example.com)" in out and "instead of chen" in out


def test_who_says_when_a_group_has_no_rotation_or_the_time_is_wrong(rt: Any, capsys) -> None:
    assert itilflow(rt, "oncall", "who", "nosuch") == 1
    assert "nosuch has no rotation" in capsys.readouterr().out
    assert itilflow(rt, "oncall", "who", "applications", "--at", "tomorrow") == 2
    assert "expected a time like" in capsys.readouterr().err


def test_ics_prints_a_persons_shifts_as_icalendar(rt: Any, capsys: Any, tmp_path) -> None:
    assert itilflow(rt, "oncall", "ics", "liu", "--from", "2026-12-07", "--days", "4") == 0
    calendar = icalendar.Calendar.from_ical(capsys.readouterr().out)
    starts = [event.decoded("dtstart") for event in calendar.walk("VEVENT")]
    assert starts == [
        datetime(2026, 12, 7, 0, 0, tzinfo=UTC),  # cut at --from: liu's shift of the 6th
        CHEN_DAY + timedelta(days=1),
        CHEN_DAY + timedelta(days=3),
    ]
    target = tmp_path / "liu.ics"
    assert itilflow(rt, "oncall", "ics", "liu", "--output", str(target)) == 0
    assert icalendar.Calendar.from_ical(target.read_bytes()).walk("VEVENT")
    assert itilflow(rt, "oncall", "ics", "nobody") == 2
    assert "no person 'nobody'" in capsys.readouterr().err


def test_check_names_rotation_people_the_directory_lost(rt: Any, capsys: Any) -> None:
    assert itilflow(rt, "oncall", "check") == 0
    assert "every person and group known" in capsys.readouterr().out
    with session_scope(rt.engine) as session:
        session.get(Engineer, "liu").active = False
    assert itilflow(rt, "oncall", "check") == 1
    assert capsys.readouterr().out == (
        "oncall.yaml: groups.applications.layers[0].people[1]: 'liu' is deactivated in the "
        "directory\n"
    )
    # ... and is not the one paged on their day: nobody is, and `who` says why.
    assert itilflow(rt, "oncall", "who", "applications", "--at", "2026-12-08 10:00") == 1
    assert "nobody ('liu' is deactivated)" in capsys.readouterr().out
