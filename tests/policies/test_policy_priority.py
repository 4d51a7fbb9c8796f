import pytest
from pydantic import ValidationError

from itilflow.policies import Policies, PriorityPolicy, decide_priority


@pytest.mark.parametrize(
    ("impact", "urgency", "expected"),
    [
        ("high", "high", "P1"),
        ("high", "medium", "P2"),
        ("medium", "high", "P2"),
        ("high", "low", "P3"),
        ("medium", "medium", "P3"),
        ("low", "high", "P3"),
        ("medium", "low", "P4"),
        ("low", "medium", "P4"),
        ("low", "low", "P4"),
    ],
)
def test_default_matrix(defaults: Policies, impact: str, urgency: str, expected: str) -> None:
    assert decide_priority(defaults.priority, impact, urgency) == expected


def test_levels_are_matched_without_case(defaults: Policies) -> None:
    assert decide_priority(defaults.priority, " High", "HIGH") == "P1"


def test_missing_values_take_the_defaults(defaults: Policies) -> None:
    assert decide_priority(defaults.priority, None, "high") == "P2"
    assert decide_priority(defaults.priority, "high", "") == "P2"


def test_unknown_levels_list_the_allowed_ones(defaults: Policies) -> None:
    with pytest.raises(
        ValueError, match="unknown impact 'huge'; expected one of high, medium, low"
    ):
        decide_priority(defaults.priority, "huge", "high")
    with pytest.raises(
        ValueError, match="unknown urgency 'now'; expected one of high, medium, low"
    ):
        decide_priority(defaults.priority, "high", "now")


def test_no_default_configured() -> None:
    policy = PriorityPolicy(impacts=["big"], urgencies=["soon"], matrix={"big": {"soon": "P1"}})
    assert decide_priority(policy, "big", "soon") == "P1"
    with pytest.raises(
        ValueError, match="no impact given and priority.yaml sets no default_impact"
    ):
        decide_priority(policy, None, "soon")


def test_custom_levels() -> None:
    policy = PriorityPolicy.model_validate(
        {
            "impacts": ["enterprise", "department", "user"],
            "urgencies": ["critical", "normal"],
            "matrix": {
                "enterprise": {"critical": "P1", "normal": "P2"},
                "department": {"critical": "P2", "normal": "P3"},
                "user": {"critical": "P3", "normal": "P4"},
            },
        }
    )
    assert decide_priority(policy, "department", "critical") == "P2"


def test_levels_listed_twice() -> None:
    with pytest.raises(ValidationError, match="listed twice: high"):
        PriorityPolicy(impacts=["high", "high"], urgencies=["x"], matrix={"high": {"x": "P1"}})
