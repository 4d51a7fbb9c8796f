"""load_policies: the defaults load, and every kind of mistake is named by file, key and remedy."""

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from itilflow.policies import PRIORITIES, Policies, PolicyError, load_policies

Edit = Callable[[str, str, str], None]


def problems_of(directory: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_policies(directory)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def test_defaults_load(defaults: Policies) -> None:
    assert defaults.priority.matrix["high"]["high"] == "P1"
    assert set(defaults.sla.targets) == set(PRIORITIES)
    assert defaults.sla.targets["P1"].response == timedelta(minutes=30)
    assert defaults.sla.targets["P1"].calendar == "always"
    assert defaults.sla.calendars["always"].always_open
    assert defaults.sla.calendars["office"].timezone == "Asia/Shanghai"
    assert defaults.sla.targets["P4"].response == timedelta(hours=24)
    assert defaults.sla.pause_on == ["on_hold"]
    assert defaults.sla.progress_updates == {
        "P1": timedelta(minutes=30),
        "P2": timedelta(hours=2),
    }
    assert "default" in defaults.escalation.chains
    assert defaults.assignment.categories["database"].group == "dba"
    assert defaults.routing.priority_tags["P1"] == ["oncall-chat", "sms"]
    assert defaults.routing.alertmanager.severity_urgency["critical"] == "high"


def test_a_copy_of_the_defaults_loads_the_same(defaults: Policies, policy_dir: Path) -> None:
    assert load_policies(policy_dir) == defaults
    assert load_policies(str(policy_dir)) == defaults


def test_policies_are_frozen(defaults: Policies) -> None:
    with pytest.raises(ValidationError):
        defaults.sla = defaults.sla  # type: ignore[misc]
    with pytest.raises(ValidationError):
        defaults.sla.pause_on = []  # type: ignore[misc]


def test_bad_duration(policy_dir: Path, edit: Edit) -> None:
    edit("sla.yaml", "P1: {response: 30m", "P1: {response: soon")
    assert problems_of(policy_dir) == [
        "sla.yaml: targets.P1.response: expected a duration like '30m', '4h' or '3d', got 'soon'"
    ]


def test_duration_without_unit(policy_dir: Path, edit: Edit) -> None:
    edit("sla.yaml", "P1: 30m", "P1: 30")
    [problem] = problems_of(policy_dir)
    assert problem.startswith("sla.yaml: progress_updates.P1: expected a duration like '30m'")
    assert "got 30 (a bare number has no unit)" in problem


def test_invalid_priority_in_matrix(policy_dir: Path, edit: Edit) -> None:
    edit(
        "priority.yaml",
        "low:    {high: P3, medium: P4, low: P4}",
        "low: {high: P3, medium: P4, low: P9}",
    )
    assert problems_of(policy_dir) == [
        "priority.yaml: matrix.low.low: expected one of P1, P2, P3, P4, got 'P9'"
    ]


def test_invalid_priority_as_key(policy_dir: Path, edit: Edit) -> None:
    edit("sla.yaml", "  P4: {response: 24h", "  P5: {response: 24h")
    problems = problems_of(policy_dir)
    assert "sla.yaml: targets.P5: invalid key: expected one of P1, P2, P3, P4, got 'P5'" in problems


def test_unknown_key_suggests_the_right_one(policy_dir: Path, edit: Edit) -> None:
    edit("sla.yaml", "P2: {response: 1h, resolution: 8h", "P2: {response: 1h, resolutoin: 8h")
    problems = problems_of(policy_dir)
    assert problems == [
        "sla.yaml: targets.P2.resolution: required key is missing",
        "sla.yaml: targets.P2.resolutoin: unknown key 'resolutoin' (did you mean 'resolution'?); "
        "expected one of response, resolution, calendar",
    ]


def test_unknown_top_level_key(policy_dir: Path, edit: Edit) -> None:
    edit("routing.yaml", "email_assignee: true", "email_asignee: true")
    [problem] = problems_of(policy_dir)
    assert problem.startswith(
        "routing.yaml: email_asignee: unknown key 'email_asignee' (did you mean 'email_assignee'?)"
    )


def test_unknown_key_under_an_aliased_field(policy_dir: Path, edit: Edit) -> None:
    edit("sla.yaml", "    24x7: true", "    24x7: true\n    open: true")
    [problem] = problems_of(policy_dir)
    assert problem.startswith("sla.yaml: calendars.always.open: unknown key 'open'")
    assert "24x7" in problem  # the allowed keys are listed as written in YAML


def test_wrong_types(policy_dir: Path, edit: Edit) -> None:
    edit("escalation.yaml", "repeat: 2,", "repeat: two,")
    edit("assignment.yaml", "default_group: servicedesk", "default_group: [servicedesk]")
    edit("routing.yaml", "email_assignee: true", "email_assignee: sometimes")
    edit("priority.yaml", "impacts: [high, medium, low]", "impacts: high")
    assert problems_of(policy_dir) == [
        "priority.yaml: impacts: expected a list, got 'high'",
        "escalation.yaml: chains.P1.steps[1].repeat: expected a whole number, got 'two'",
        "assignment.yaml: default_group: expected text, got a list",
        "routing.yaml: email_assignee: expected true or false, got 'sometimes'",
    ]


def test_missing_file(policy_dir: Path) -> None:
    (policy_dir / "escalation.yaml").unlink()
    assert problems_of(policy_dir) == ["escalation.yaml: file not found"]


def test_missing_directory(tmp_path: Path) -> None:
    problems = problems_of(tmp_path / "nowhere")
    assert problems == [f"{tmp_path / 'nowhere'}: policy directory not found"]


def test_bad_yaml_names_the_line(policy_dir: Path) -> None:
    (policy_dir / "routing.yaml").write_text("language: en\npriority_tags: [oncall\nsurvey: {}\n")
    [problem] = problems_of(policy_dir)
    assert problem.startswith("routing.yaml: invalid YAML at line 3, column ")


@pytest.mark.parametrize(
    ("text", "got"),
    [("", "an empty file"), ("- a\n- b\n", "a list"), ("just text\n", "'just text'")],
)
def test_file_that_is_not_a_mapping(policy_dir: Path, text: str, got: str) -> None:
    (policy_dir / "assignment.yaml").write_text(text)
    assert problems_of(policy_dir) == [
        f"assignment.yaml: expected a mapping of keys at the top level, got {got}"
    ]


def test_undefined_calendar(policy_dir: Path, edit: Edit) -> None:
    edit("sla.yaml", "resolution: 8h, calendar: office}", "resolution: 8h, calendar: ofice}")
    assert problems_of(policy_dir) == [
        "sla.yaml: targets.P2.calendar: calendar 'ofice' is not defined under 'calendars' "
        "(defined: always, office)"
    ]


def test_every_priority_needs_a_target(policy_dir: Path, edit: Edit) -> None:
    edit("sla.yaml", "  P3: {response: 4h, resolution: 24h, calendar: office}", "")
    assert problems_of(policy_dir) == [
        "sla.yaml: targets.P3: missing; every priority needs a target"
    ]


def test_invalid_timezone(policy_dir: Path, edit: Edit) -> None:
    edit("sla.yaml", "timezone: Asia/Shanghai", "timezone: Asia/Shangai")
    assert problems_of(policy_dir) == [
        "sla.yaml: calendars.office.timezone: expected an IANA time zone like 'Asia/Shanghai' or "
        "'Europe/Berlin', got 'Asia/Shangai'"
    ]


def test_bad_opening_hours_and_holiday(policy_dir: Path, edit: Edit) -> None:
    edit("sla.yaml", 'tue: ["09:00-12:00", "13:00-18:00"]', 'tue: ["09:00-12:00", "18:00-13:00"]')
    edit("sla.yaml", 'wed: ["09:00-12:00", "13:00-18:00"]', 'wed: ["9-12"]')
    edit("sla.yaml", "- 2026-05-01", "- 2026-05-32")
    assert problems_of(policy_dir) == [
        "sla.yaml: calendars.office.hours.tue[1]: expected opening hours like '09:00-18:00' with "
        "the end after the start, got '18:00-13:00'",
        "sla.yaml: calendars.office.hours.wed[0]: expected opening hours like '09:00-18:00', "
        "got '9-12'",
        "sla.yaml: calendars.office.holidays[1]: expected a date like 2026-10-01, got '2026-05-32'",
    ]


def test_overlapping_hours_and_no_hours(policy_dir: Path, edit: Edit) -> None:
    edit("sla.yaml", 'mon: ["09:00-12:00", "13:00-18:00"]', 'mon: ["09:00-12:00", "11:00-18:00"]')
    edit("sla.yaml", "    24x7: true", "    24x7: false")
    assert problems_of(policy_dir) == [
        "sla.yaml: calendars.always.hours: expected opening hours for at least one weekday, "
        "or '24x7: true'",
        "sla.yaml: calendars.office.hours.mon: opening hours overlap: 09:00-12:00 and 11:00-18:00",
    ]


def test_matrix_must_cover_every_pair(policy_dir: Path, edit: Edit) -> None:
    edit(
        "priority.yaml", "medium: {high: P2, medium: P3, low: P4}", "medium: {high: P2, medium: P3}"
    )
    edit("priority.yaml", "default_urgency: medium", "default_urgency: extreme")
    assert problems_of(policy_dir) == [
        "priority.yaml: matrix.medium.low: missing; every impact x urgency pair needs a priority "
        "(P1..P4)",
        "priority.yaml: default_urgency: expected one of high, medium, low, got 'extreme'",
    ]


def test_matrix_rows_must_be_known_levels(policy_dir: Path, edit: Edit) -> None:
    edit("priority.yaml", "  low:    {high: P3", "  lowest: {high: P3")
    problems = problems_of(policy_dir)
    assert (
        "priority.yaml: matrix.lowest: 'lowest' is not an impact level; expected one of "
        "high, medium, low" in problems
    )
    assert (
        "priority.yaml: matrix.low.high: missing; every impact x urgency pair needs a priority "
        "(P1..P4)" in problems
    )


def test_escalation_steps_out_of_order(policy_dir: Path, edit: Edit) -> None:
    edit("escalation.yaml", "{after: 30m, notify: manager}", "{after: 12m, notify: manager}")
    assert problems_of(policy_dir) == [
        "escalation.yaml: chains.P1.steps[3].after: steps must be in increasing order of 'after': "
        "12m comes after 15m"
    ]


def test_escalation_repeat_needs_an_interval(policy_dir: Path, edit: Edit) -> None:
    edit("escalation.yaml", "repeat: 2, repeat_every: 5m", "repeat: 2")
    edit("escalation.yaml", "{after: 4h, notify: manager}", "{after: 4h, notify: boss}")
    assert problems_of(policy_dir) == [
        "escalation.yaml: chains.P1.steps[1].repeat_every: required (a positive duration) when "
        "repeat is above 0",
        "escalation.yaml: chains.P2.steps[2].notify: expected one of assignee, group_lead, "
        "manager, group, on_call, got 'boss'",
    ]


def test_escalation_needs_a_default_chain(policy_dir: Path, edit: Edit) -> None:
    edit("escalation.yaml", "  default:", "  defualt:")
    problems = problems_of(policy_dir)
    assert problems[0].startswith(
        "escalation.yaml: chains.defualt: invalid key: expected one of P1, P2, P3, P4, default"
    )


def test_cross_file_levels(policy_dir: Path, edit: Edit) -> None:
    edit("routing.yaml", "critical: high", "critical: highest")
    edit("routing.yaml", "default_impact: medium", "default_impact: moderate")
    assert problems_of(policy_dir) == [
        "routing.yaml: alertmanager.default_impact: 'moderate' is not an impact level in "
        "priority.yaml; expected one of high, medium, low",
        "routing.yaml: alertmanager.severity_urgency.critical: 'highest' is not an urgency level "
        "in priority.yaml; expected one of high, medium, low",
    ]


def test_routing_values(policy_dir: Path, edit: Edit) -> None:
    edit("routing.yaml", "language: en", "language: fr")
    edit("routing.yaml", "low_score: 2", "low_score: 5")
    edit("routing.yaml", "P1: [oncall-chat, sms]", "P1: [oncall chat, sms]")
    assert problems_of(policy_dir) == [
        "routing.yaml: language: expected one of en, zh_CN, got 'fr'",
        "routing.yaml: priority_tags.P1[0]: expected a name of letters, digits, '-', '_' or '.', "
        "got 'oncall chat'",
        "routing.yaml: survey.low_score: expected a score below the scale (5)",
    ]


def test_every_broken_file_is_reported_at_once(policy_dir: Path, edit: Edit) -> None:
    edit("sla.yaml", "P1: {response: 30m", "P1: {response: soon")
    edit("priority.yaml", "high:   {high: P1", "high:   {high: P0")
    (policy_dir / "routing.yaml").unlink()
    problems = problems_of(policy_dir)
    assert [problem.split(":")[0] for problem in problems] == [
        "priority.yaml",
        "sla.yaml",
        "routing.yaml",
    ]


def test_negative_numbers(policy_dir: Path, edit: Edit) -> None:
    edit("escalation.yaml", "repeat: 1, repeat_every: 1h", "repeat: -1, repeat_every: 1h")
    assert problems_of(policy_dir) == [
        "escalation.yaml: chains.P2.steps[1].repeat: expected a number at least 0, got -1"
    ]
