"""The survey callback's policy (routing.yaml `survey.callback`): levels, deadlines, what comes
after a level, and mistakes named by file and key."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from itilflow.policies import (
    CallbackPolicy,
    Policies,
    PolicyError,
    after_level,
    level_due,
    load_policies,
    survey_needs_callback,
)

Edit = Callable[[str, str, str], None]
LEVELS = "      - {who: engineer, within: 8h}"


def problems_of(directory: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_policies(directory)
    return caught.value.problems


def test_the_defaults_call_back_in_three_levels(defaults: Policies) -> None:
    callback = defaults.routing.survey.callback
    assert callback is not None and callback.calendar == "office"
    assert [(level.who, level.within) for level in callback.levels] == [
        ("engineer", timedelta(hours=8)),
        ("group_lead", timedelta(hours=16)),
        ("expert", timedelta(hours=24)),
    ]
    assert callback.levels[2].group == "dba"
    survey = defaults.routing.survey
    assert survey_needs_callback(survey, 1) and survey_needs_callback(survey, 2)
    assert not survey_needs_callback(survey, 3)
    assert not survey_needs_callback(survey.model_copy(update={"callback": None}), 1)
    with pytest.raises(ValueError, match="1..5"):
        survey_needs_callback(survey, 0)


def test_what_follows_a_level() -> None:
    policy = CallbackPolicy.model_validate(
        {"calendar": "office", "levels": [{"who": "engineer", "within": "8h"}] * 3}
    )
    assert after_level(policy, 1, "satisfied") == "resolved"
    assert after_level(policy, 3, "satisfied") == "resolved"
    assert after_level(policy, 1, "not_satisfied") == "next_level"
    assert after_level(policy, 2, "unreachable") == "next_level"
    assert after_level(policy, 2, None) == "next_level"  # lapsed
    assert after_level(policy, 3, "not_satisfied") == "unresolved"
    assert after_level(policy, 3, None) == "unresolved"


def test_deadlines_count_business_time(defaults: Policies) -> None:
    callback = defaults.routing.survey.callback
    assert callback is not None
    office = defaults.sla.calendars["office"].calendar()
    friday_5pm = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # 17:00 in Asia/Shanghai
    # One working day (8 h) from Friday 17:00 is Monday 17:00; two is Tuesday 17:00.
    assert level_due(callback, office, 1, friday_5pm) == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert level_due(callback, office, 2, friday_5pm) == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_an_expert_names_a_person_or_a_group(policy_dir: Path, edit: Edit) -> None:
    edit("routing.yaml", "{who: expert, group: dba, within: 24h}", "{who: expert, within: 24h}")
    edit("routing.yaml", LEVELS, "      - {who: engineer, person: sun, within: 8h}")
    assert problems_of(policy_dir) == [
        "routing.yaml: survey.callback.levels[0].person: only an expert level names a person",
        "routing.yaml: survey.callback.levels[2].who: an expert level names exactly one of "
        "'person' or 'group'",
    ]


def test_unknown_calendar_and_bad_level(policy_dir: Path, edit: Edit) -> None:
    edit("routing.yaml", "calendar: office", "calendar: weekends")
    edit("routing.yaml", LEVELS, "      - {who: intern, within: soon}")
    problems = problems_of(policy_dir)
    assert any(
        p.startswith("routing.yaml: survey.callback.levels[0].who:") and "engineer" in p
        for p in problems
    ), problems
    assert (
        "routing.yaml: survey.callback.levels[0].within: expected a duration like '30m', '4h' "
        "or '3d', got 'soon'" in problems
    )
    edit("routing.yaml", "      - {who: intern, within: soon}", LEVELS)
    assert problems_of(policy_dir) == [
        "routing.yaml: survey.callback.calendar: 'weekends' is not a calendar of sla.yaml; "
        "expected one of always, office"
    ]


def test_callback_and_follow_up_exclude_each_other(policy_dir: Path, edit: Edit) -> None:
    edit("routing.yaml", "follow_up: false", "follow_up: true")
    assert problems_of(policy_dir) == [
        "routing.yaml: survey.follow_up: a callback in levels replaces the follow-up incident: "
        "set follow_up: false, or remove 'callback'"
    ]


def test_a_routing_file_from_before_callbacks_keeps_the_follow_up(
    policy_dir: Path, edit: Edit
) -> None:
    text = (policy_dir / "routing.yaml").read_text()
    start, end = text.index("  callback:"), text.index("# Alerts from")
    (policy_dir / "routing.yaml").write_text(text[:start] + "\n" + text[end:])
    edit("routing.yaml", "follow_up: false", "follow_up: true")
    survey = load_policies(policy_dir).routing.survey
    assert survey.callback is None and survey.follow_up
