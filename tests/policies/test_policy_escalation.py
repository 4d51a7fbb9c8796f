from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from itilflow.policies import (
    Calendar,
    EscalationPolicy,
    EscalationSnapshot,
    Policies,
    escalation_schedule,
    snapshot_escalation,
)

OPENED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def minutes(value: int) -> datetime:
    return OPENED + timedelta(minutes=value)


def test_snapshot_copies_the_priority_chain(defaults: Policies) -> None:
    snapshot = snapshot_escalation(defaults.escalation, "P1")
    assert snapshot.priority == "P1"
    assert snapshot.chain == "P1"
    assert snapshot.stop_when == "acknowledged"
    assert [step.notify for step in snapshot.steps] == [
        "on_call",
        "on_call",
        "group_lead",
        "manager",
    ]


def test_priority_without_a_chain_uses_default(defaults: Policies) -> None:
    snapshot = snapshot_escalation(defaults.escalation, "P4")
    assert snapshot.chain == "default"
    assert snapshot.priority == "P4"
    assert snapshot.steps == tuple(defaults.escalation.chains["default"].steps)


def test_snapshot_round_trips_through_json(defaults: Policies) -> None:
    snapshot = snapshot_escalation(defaults.escalation, "P1")
    stored = snapshot.model_dump(mode="json")
    assert stored["steps"][1] == {
        "after": "10m",
        "notify": "on_call",
        "repeat": 2,
        "repeat_every": "5m",
    }
    assert EscalationSnapshot.model_validate(stored) == snapshot
    assert EscalationSnapshot.model_validate_json(snapshot.model_dump_json()) == snapshot


def test_snapshot_does_not_follow_later_policy_edits() -> None:
    before = EscalationPolicy.model_validate(
        {"chains": {"default": {"steps": [{"after": "1h", "notify": "group_lead"}]}}}
    )
    snapshot = snapshot_escalation(before, "P2")
    after = EscalationPolicy.model_validate(
        {"chains": {"default": {"steps": [{"after": "5m", "notify": "manager"}]}}}
    )
    assert snapshot_escalation(after, "P2") != snapshot
    assert snapshot.steps[0].notify == "group_lead"


def test_schedule_expands_repeats_in_time_order(defaults: Policies) -> None:
    snapshot = snapshot_escalation(defaults.escalation, "P1")
    planned = escalation_schedule(snapshot, OPENED)
    assert [(p.step, p.repeat, p.due_at, p.notify) for p in planned] == [
        (0, 0, minutes(5), "on_call"),
        (1, 0, minutes(10), "on_call"),
        (1, 1, minutes(15), "on_call"),
        (2, 0, minutes(15), "group_lead"),
        (1, 2, minutes(20), "on_call"),
        (3, 0, minutes(30), "manager"),
    ]


def test_schedule_outputs_utc_for_any_input_zone() -> None:
    policy = EscalationPolicy.model_validate(
        {"chains": {"default": {"steps": [{"after": "1h", "notify": "manager"}]}}}
    )
    opened = datetime(2026, 3, 2, 17, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    [planned] = escalation_schedule(snapshot_escalation(policy, "P3"), opened)
    assert planned.due_at == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert planned.due_at.tzinfo is UTC


def test_schedule_on_a_business_calendar_skips_the_weekend() -> None:
    policy = EscalationPolicy.model_validate(
        {
            "chains": {
                "default": {
                    "stop_when": "resolved",
                    "steps": [
                        {"after": "2h", "notify": "assignee", "repeat": 1, "repeat_every": "2h"}
                    ],
                }
            }
        }
    )
    office = Calendar("UTC", hours={day: [(9 * 60, 17 * 60)] for day in range(5)})
    friday_4pm = datetime(2026, 3, 6, 16, 0, tzinfo=UTC)
    snapshot = snapshot_escalation(policy, "P4")
    assert snapshot.stop_when == "resolved"
    due = [p.due_at for p in escalation_schedule(snapshot, friday_4pm, calendar=office)]
    assert due == [
        datetime(2026, 3, 9, 10, 0, tzinfo=UTC),
        datetime(2026, 3, 9, 12, 0, tzinfo=UTC),
    ]
    wall = [p.due_at for p in escalation_schedule(snapshot, friday_4pm)]
    assert wall == [friday_4pm + timedelta(hours=2), friday_4pm + timedelta(hours=4)]


def test_empty_chain_plans_nothing() -> None:
    policy = EscalationPolicy.model_validate({"chains": {"default": {}}})
    assert escalation_schedule(snapshot_escalation(policy, "P1"), OPENED) == []


def test_bad_arguments(defaults: Policies) -> None:
    with pytest.raises(ValueError, match="unknown priority 'P0'"):
        snapshot_escalation(defaults.escalation, "P0")
    snapshot = snapshot_escalation(defaults.escalation, "P1")
    with pytest.raises(ValueError, match="timezone-aware"):
        escalation_schedule(snapshot, datetime(2026, 3, 2))  # noqa: DTZ001


def test_equal_after_is_allowed_and_repeat_every_needs_repeat() -> None:
    steps = [{"after": "0m", "notify": "group"}, {"after": "0m", "notify": "on_call"}]
    EscalationPolicy.model_validate({"chains": {"default": {"steps": steps}}})
    with pytest.raises(ValueError, match="repeat_every is set but repeat is 0"):
        EscalationPolicy.model_validate(
            {
                "chains": {
                    "default": {"steps": [{"after": "1h", "notify": "group", "repeat_every": "1h"}]}
                }
            }
        )
