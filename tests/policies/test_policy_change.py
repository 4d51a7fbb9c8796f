"""Change risk, windows and approval quorums: pure decisions from change.yaml."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from itilflow.policies import (
    ApprovalStage,
    Policies,
    Segregation,
    approval_stages,
    assess_risk,
    in_maintenance_window,
    stage_outcome,
)


def test_risk_adds_up_with_its_reasons(defaults: Policies) -> None:
    risk = assess_risk(
        defaults.change,
        category="normal",
        ci_criticalities=["low", "high"],
        step_count=4,
        failed_changes=1,
        planned_start=datetime(2026, 11, 24, 15, 0, tzinfo=UTC),
    )  # 23:00 CST
    assert risk.score == 3 + 1 + 2 + 2
    assert risk.level == "high"
    assert len(risk.reasons) == 4 and risk.refused is None


def test_outside_the_maintenance_window_costs_points(defaults: Policies) -> None:
    tuesday_noon = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
    assert not in_maintenance_window(defaults.change, tuesday_noon)
    risk = assess_risk(
        defaults.change,
        category="standard",
        ci_criticalities=[],
        step_count=1,
        failed_changes=0,
        planned_start=tuesday_noon,
    )
    assert risk.score == 0.5 + 2
    assert any("outside the maintenance windows" in r for r in risk.reasons)


def test_night_window_runs_past_midnight(defaults: Policies) -> None:
    wednesday_0300_cst = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)
    assert in_maintenance_window(defaults.change, wednesday_0300_cst)


def test_a_freeze_refuses_all_but_emergencies(defaults: Policies) -> None:
    festival = datetime(2027, 2, 10, 16, 0, tzinfo=UTC)
    normal = assess_risk(
        defaults.change,
        category="normal",
        ci_criticalities=[],
        step_count=1,
        failed_changes=0,
        planned_start=festival,
    )
    emergency = assess_risk(
        defaults.change,
        category="emergency",
        ci_criticalities=[],
        step_count=1,
        failed_changes=0,
        planned_start=festival,
    )
    assert normal.refused and "Spring Festival" in normal.refused
    assert emergency.refused is None
    assert emergency.score > normal.score


def test_high_risk_normal_changes_also_go_to_the_cab(defaults: Policies) -> None:
    assert [s.name for s in approval_stages(defaults.change, "normal", "medium")] == [
        "technical-lead"
    ]
    assert [s.name for s in approval_stages(defaults.change, "normal", "high")] == [
        "technical-lead",
        "cab",
    ]
    assert approval_stages(defaults.change, "standard", "high") == []


@pytest.mark.parametrize(
    ("quorum", "decisions", "outcome"),
    [
        ("any", {}, "pending"),
        ("any", {"a": "approve"}, "approved"),
        ("any", {"b": "reject", "a": "approve"}, "rejected"),  # the first decision decides
        ("all", {"a": "approve", "b": "approve"}, "pending"),
        ("all", {"a": "approve", "b": "approve", "c": "approve"}, "approved"),
        ("all", {"a": "approve", "b": "reject"}, "rejected"),
        (2, {"a": "approve", "b": "reject"}, "pending"),
        (2, {"a": "approve", "b": "reject", "c": "approve"}, "approved"),
        (2, {"a": "reject", "b": "reject"}, "rejected"),
        (2, {"x": "approve", "y": "approve"}, "pending"),  # not approvers of this stage
    ],
)
def test_quorum(quorum, decisions, outcome) -> None:
    stage = ApprovalStage(name="s", approvers=["a", "b", "c"], quorum=quorum)
    assert stage_outcome(stage, decisions) == outcome


def test_a_quorum_above_the_approver_count_is_refused(policy_dir, edit) -> None:
    from itilflow.policies import PolicyError, load_policies

    edit("change.yaml", "quorum: 2", "quorum: 5")
    with pytest.raises(
        PolicyError,
        match=r"change.yaml: approvals.normal.high_risk_stages\[0\]"
        r".quorum: expected 1 to 3",
    ):
        load_policies(policy_dir)


def test_approval_links_confirm_by_code_unless_switched_off(defaults: Policies) -> None:
    links = defaults.change.approval_links
    assert links.confirm_by_code is True
    assert links.code_attempts == 5
    assert links.max_codes_per_link == 10


def test_segregation_of_duties_is_on_by_default(defaults: Policies) -> None:
    segregation = defaults.change.segregation
    assert segregation.requester_may_approve is False
    assert segregation.one_vote_per_person is True
    # A change.yaml without the section gets the same.
    assert Segregation() == segregation


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        (
            "confirm_by_code: true",
            "confirm_by_code: maybe",
            r"change.yaml: approval_links.confirm_by_code: expected true or false",
        ),
        (
            "code_attempts: 5",
            "code_attempts: 0",
            r"change.yaml: approval_links.code_attempts: expected a number at least 1",
        ),
        (
            "code_valid_for: 10m",
            'code_valid_for: "0"',
            r"change.yaml: approval_links.code_valid_for: expected a duration above 0",
        ),
        (
            "code_resend_after: 1m",
            "code_resend_after: 1m\n  send_by_pigeon: true",
            r"change.yaml: approval_links.send_by_pigeon",
        ),
        (
            "max_codes_per_link: 10",
            "max_codes_per_link: 0",
            r"change.yaml: approval_links.max_codes_per_link: expected a number at least 1",
        ),
        (
            "requester_may_approve: false",
            "requester_may_approve: sometimes",
            r"change.yaml: segregation.requester_may_approve: expected true or false",
        ),
        (
            "one_vote_per_person: true",
            "one_vote_per_person: true\n  counting: loose",
            r"change.yaml: segregation.counting",
        ),
    ],
    ids=[
        "not-a-bool",
        "no-attempts",
        "no-validity",
        "unknown-key",
        "no-codes",
        "segregation-not-a-bool",
        "segregation-unknown-key",
    ],
)
def test_bad_approval_link_settings_name_their_key(policy_dir, edit, old, new, says) -> None:
    from itilflow.policies import PolicyError, load_policies

    edit("change.yaml", old, new)
    with pytest.raises(PolicyError, match=says):
        load_policies(policy_dir)
