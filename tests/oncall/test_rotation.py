"""Who is on call: rotations, handoffs, layers, overrides and DST, without the engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from itilflow.policies import PolicyError, load_policies
from itilflow.policies.oncall import GroupSchedule, OnCallPolicy, directory_problems
from itilflow.services.oncall import (
    MAX_RANGE,
    Cover,
    group_shifts,
    on_call_at,
    person_shifts,
    policy_covers,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def schedule(**fields) -> GroupSchedule:
    values = {
        "timezone": "Europe/Berlin",
        "layers": [
            {
                "name": "day",
                "every": "day",
                "handoff": "09:00",
                "start": "2026-03-01",
                "people": ["ann", "bob", "cat"],
            }
        ],
    }
    values.update(fields)
    return GroupSchedule.model_validate(values)


def local(zone: ZoneInfo, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=zone)  # type: ignore[misc]


def who(rota: GroupSchedule, at: datetime, covers=()) -> str | None:
    found = on_call_at("ops", rota, at, covers)
    return found.person if found else None


def test_a_daily_rotation_hands_over_at_the_handoff_minute() -> None:
    rota = schedule()
    assert who(rota, local(BERLIN, 2026, 3, 1, 8, 59)) is None  # before the first shift
    assert who(rota, local(BERLIN, 2026, 3, 1, 9, 0)) == "ann"
    assert who(rota, local(BERLIN, 2026, 3, 2, 8, 59, 59)) == "ann"
    assert who(rota, local(BERLIN, 2026, 3, 2, 9, 0)) == "bob"
    assert who(rota, local(BERLIN, 2026, 3, 3, 9, 0)) == "cat"
    assert who(rota, local(BERLIN, 2026, 3, 4, 9, 0)) == "ann"  # round again


def test_the_handoff_stays_at_9_on_the_wall_across_both_dst_changes() -> None:
    rota = schedule()
    # Berlin moves to summer time on 2026-03-29 (02:00 -> 03:00): 09:00 is 07:00 UTC after.
    assert who(rota, datetime(2026, 3, 29, 6, 59, tzinfo=UTC)) == "ann"  # 08:59 CEST
    assert who(rota, datetime(2026, 3, 29, 7, 0, tzinfo=UTC)) == "bob"  # 09:00 CEST
    shifts = group_shifts(
        "ops", rota, local(BERLIN, 2026, 3, 28, 0), local(BERLIN, 2026, 3, 31, 12)
    )
    across = next(s for s in shifts if s.starts == local(BERLIN, 2026, 3, 28, 9))
    assert across.ends - across.starts == timedelta(hours=23)
    # ... and back on 2026-10-25: the day's shift lasts 25 hours.
    autumn = group_shifts(
        "ops", rota, local(BERLIN, 2026, 10, 24, 0), local(BERLIN, 2026, 10, 26, 12)
    )
    long = next(s for s in autumn if s.starts == local(BERLIN, 2026, 10, 24, 9))
    assert long.ends - long.starts == timedelta(hours=25)
    assert long.ends.astimezone(BERLIN).hour == 9


def test_a_weekly_rotation_hands_over_on_the_weekday_of_its_start_in_new_york() -> None:
    rota = schedule(
        timezone="America/New_York",
        layers=[
            {
                "name": "week",
                "every": "week",
                "handoff": "10:30",
                "start": "2026-11-02",
                "people": ["ann", "bob"],
            }
        ],
    )
    # New York leaves summer time on Sunday 2026-11-01; the rotation starts Monday 11-02.
    assert who(rota, local(NEW_YORK, 2026, 11, 9, 10, 29)) == "ann"
    assert who(rota, local(NEW_YORK, 2026, 11, 9, 10, 30)) == "bob"
    assert who(rota, local(NEW_YORK, 2027, 3, 15, 10, 30)) == "bob"  # 19 weeks on, after DST
    assert who(rota, local(NEW_YORK, 2027, 3, 15, 10, 29)) == "ann"


def test_a_later_layer_covers_its_hours_over_the_earlier_one() -> None:
    rota = schedule(
        layers=[
            {"name": "day", "every": "week", "start": "2026-03-02", "people": ["ann"]},
            {
                "name": "nights",
                "every": "week",
                "start": "2026-03-02",
                "people": ["bob"],
                "hours": {"mon": ["00:00-07:00", "20:00-24:00"], "sat": ["00:00-24:00"]},
            },
        ]
    )
    assert who(rota, local(BERLIN, 2026, 3, 9, 12)) == "ann"
    assert who(rota, local(BERLIN, 2026, 3, 9, 20)) == "bob"
    assert who(rota, local(BERLIN, 2026, 3, 9, 6, 59)) == "bob"
    assert who(rota, local(BERLIN, 2026, 3, 10, 0, 30)) == "ann"  # tuesday night: no layer 2
    found = on_call_at("ops", rota, local(BERLIN, 2026, 3, 14, 15))
    assert found and (found.person, found.layer) == ("bob", "nights")


def test_overrides_swap_and_cover_leave_and_the_later_one_wins() -> None:
    rota = schedule()
    day = local(BERLIN, 2026, 3, 10, 12)  # ann's day (9 days after the start: 9 % 3 == 0)
    assert who(rota, day) == "ann"
    window = (local(BERLIN, 2026, 3, 10, 0), local(BERLIN, 2026, 3, 11, 0))
    swap = Cover("dan", *window)
    leave_of_bob = Cover("eve", *window, instead_of="bob")
    leave_of_ann = Cover("eve", *window, instead_of="ann")
    assert who(rota, day, [swap]) == "dan"
    assert who(rota, day, [leave_of_bob]) == "ann"  # bob is not on call then: no effect
    assert who(rota, day, [leave_of_ann]) == "eve"
    assert who(rota, day, [swap, Cover("fay", *window)]) == "fay"
    assert who(rota, window[1], [swap]) == "ann"  # the end is not covered
    found = on_call_at("ops", rota, day, [Cover("dan", *window, source="api:7")])
    assert found and (found.source, found.scheduled) == ("api:7", "ann")


def test_policy_overrides_without_an_offset_are_read_in_the_groups_zone() -> None:
    rota = schedule(
        overrides=[{"person": "dan", "from": "2026-03-10 08:00", "to": "2026-03-10 18:00"}]
    )
    (cover,) = policy_covers(rota)
    assert cover.starts == local(BERLIN, 2026, 3, 10, 8)
    assert who(rota, local(BERLIN, 2026, 3, 10, 9), policy_covers(rota)) == "dan"


def test_a_persons_shifts_over_a_range_are_cut_and_merged() -> None:
    policy = OnCallPolicy.model_validate(
        {
            "groups": {
                "ops": schedule().model_dump(mode="json"),
                "db": schedule(
                    layers=[
                        {"name": "w", "every": "week", "start": "2026-03-02", "people": ["ann"]}
                    ]
                ).model_dump(mode="json"),
            }
        }
    )
    start, end = local(BERLIN, 2026, 3, 9, 0), local(BERLIN, 2026, 3, 16, 0)
    shifts = person_shifts(policy, "ann", start, end)
    assert [s.group for s in shifts].count("db") == 1  # one week, merged
    ops = [s for s in shifts if s.group == "ops"]
    assert [s.starts.astimezone(BERLIN).day for s in ops] == [10, 13]  # every third day
    assert all(s.ends - s.starts == timedelta(days=1) for s in ops)
    with pytest.raises(ValueError, match="at most"):
        person_shifts(policy, "ann", start, start + MAX_RANGE + timedelta(days=1))


def test_invalid_rotations_are_named_by_file_and_key(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    for source in load_policies.__globals__["default_policy_dir"]().iterdir():
        if source.name.endswith(".yaml"):
            (folder / source.name).write_text(source.read_text("utf-8"), "utf-8")
    bad = {
        "groups": {
            "dba": {
                "timezone": "Mars/Olympus",
                "layers": [
                    {
                        "name": "x",
                        "every": "month",
                        "handoff": "25:00",
                        "start": "2026-02-30",
                        "people": [],
                    },
                    {"name": "x", "every": "day", "start": "2026-01-01", "people": ["sun"]},
                ],
                "overrides": [
                    {"person": "sun", "from": "2026-01-02 10:00", "to": "2026-01-02 09:00"}
                ],
            }
        }
    }
    (folder / "oncall.yaml").write_text(yaml.safe_dump(bad), "utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policies(folder)
    text = str(caught.value)
    for expected in (
        "oncall.yaml: groups.dba.timezone: expected an IANA time zone",
        "oncall.yaml: groups.dba.layers[0].every: expected one of day, week",
        "oncall.yaml: groups.dba.layers[0].handoff: expected a local time like '09:00'",
        "oncall.yaml: groups.dba.layers[0].start: expected a date",
        "oncall.yaml: groups.dba.layers[0].people:",
    ):
        assert expected in text, text
    bad["groups"]["dba"]["timezone"] = "UTC"
    bad["groups"]["dba"]["layers"][0] = {
        "name": "x",
        "every": "day",
        "start": "2026-01-01",
        "people": ["sun"],
    }
    (folder / "oncall.yaml").write_text(yaml.safe_dump(bad), "utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policies(folder)
    assert "oncall.yaml: groups.dba.layers[1].name: 'x' names two layers" in str(caught.value)
    bad["groups"]["dba"]["layers"][1]["start"] = "9999-12-31"
    (folder / "oncall.yaml").write_text(yaml.safe_dump(bad), "utf-8")
    with pytest.raises(PolicyError, match=r"layers\[1\]\.start: expected a date between 1971"):
        load_policies(folder)
    assert "oncall.yaml: groups.dba.overrides[0].to: expected a time after 'from'" in str(
        caught.value
    )


def test_a_folder_without_oncall_yaml_has_no_rotations(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    for source in load_policies.__globals__["default_policy_dir"]().iterdir():
        if source.name.endswith(".yaml") and source.name != "oncall.yaml":
            (folder / source.name).write_text(source.read_text("utf-8"), "utf-8")
    assert load_policies(folder).oncall.groups == {}
    assert load_policies().oncall.groups  # the packaged (demo) file has the demo's rotations


def test_unknown_people_and_groups_are_named_against_the_directory() -> None:
    policy = OnCallPolicy.model_validate(
        {
            "groups": {
                "ops": schedule(
                    overrides=[
                        {
                            "person": "zed",
                            "instead_of": "ann",
                            "from": "2026-03-10 08:00",
                            "to": "2026-03-10 18:00",
                        }
                    ]
                ).model_dump(mode="json")
            }
        }
    )
    problems = directory_problems(policy, {"ann": True, "bob": False}, groups=["dba"])
    assert problems == [
        "oncall.yaml: groups.ops: not a group in the directory",
        "oncall.yaml: groups.ops.layers[0].people[1]: 'bob' is deactivated in the directory",
        "oncall.yaml: groups.ops.layers[0].people[2]: 'cat' is not a person in the directory",
        "oncall.yaml: groups.ops.overrides[0].person: 'zed' is not a person in the directory",
    ]


def test_the_demo_rotation_names_only_demo_people() -> None:
    from itilflow.demo import demo_data

    data = demo_data()
    people = {row["username"]: True for row in data["engineers"]}
    groups = [row["name"] for row in data["groups"]]
    assert directory_problems(load_policies().oncall, people, groups) == []
