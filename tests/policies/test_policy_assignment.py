from typing import Any

import pytest
from pydantic import ValidationError

from itilflow.policies import AssignmentPolicy, Candidate, Policies, choose_assignee


def engineer(username: str, group: str = "dba", **fields: Any) -> Candidate:
    values: dict[str, Any] = {"skills": [], "capacity": 5, "on_duty": True, "open_load": 0}
    values.update(fields)
    return Candidate(username=username, group=group, **values)


def test_prefers_the_required_skill_over_a_lighter_load(defaults: Policies) -> None:
    team = [
        engineer("amy", open_load=0),
        engineer("bo", skills=["database"], open_load=3),
    ]
    chosen = choose_assignee(defaults.assignment, "database", team)
    assert (chosen.group, chosen.engineer) == ("dba", "bo")
    assert "has 1/1 required skill(s) (database)" in chosen.reason
    assert "category 'database' goes to group 'dba'" in chosen.reason


def test_then_the_lowest_load_relative_to_capacity(defaults: Policies) -> None:
    team = [
        engineer("amy", skills=["database"], capacity=4, open_load=2),  # 50%
        engineer("bo", skills=["database"], capacity=10, open_load=3),  # 30%
        engineer("cy", skills=["database"], capacity=2, open_load=1),  # 50%
    ]
    chosen = choose_assignee(defaults.assignment, "database", team)
    assert chosen.engineer == "bo"
    assert "load 3/10, lowest of 3 available" in chosen.reason


def test_equal_ratio_prefers_fewer_tickets_then_username(defaults: Policies) -> None:
    team = [
        engineer("cy", capacity=6, open_load=2),
        engineer("bo", capacity=3, open_load=1),
        engineer("amy", capacity=3, open_load=1),
    ]
    assert choose_assignee(defaults.assignment, "database", team).engineer == "amy"
    # Deterministic whatever the order of the candidates.
    assert choose_assignee(defaults.assignment, "database", team[::-1]).engineer == "amy"


def test_skips_engineers_at_capacity_and_off_duty(defaults: Policies) -> None:
    team = [
        engineer("amy", skills=["database"], capacity=2, open_load=2),
        engineer("bo", skills=["database"], on_duty=False),
        engineer("cy", capacity=0),
        engineer("dee", capacity=5, open_load=4),
    ]
    assert choose_assignee(defaults.assignment, "database", team).engineer == "dee"


def test_nobody_available_assigns_the_group_only(defaults: Policies) -> None:
    team = [
        engineer("amy", capacity=2, open_load=3),
        engineer("bo", on_duty=False),
        engineer("net", group="network"),
    ]
    chosen = choose_assignee(defaults.assignment, "database", team)
    assert (chosen.group, chosen.engineer) == ("dba", None)
    assert "nobody available in the group (2 member(s): 1 off duty, 1 at capacity)" in chosen.reason


def test_empty_group(defaults: Policies) -> None:
    chosen = choose_assignee(defaults.assignment, "security", [])
    assert (chosen.group, chosen.engineer) == ("security", None)
    assert "(0 member(s))" in chosen.reason


def test_only_members_of_the_group_are_considered(defaults: Policies) -> None:
    team = [engineer("amy", group="network"), engineer("bo", group="hardware", open_load=4)]
    assert choose_assignee(defaults.assignment, "hardware", team).engineer == "bo"


def test_unknown_or_missing_category_goes_to_the_default_group(defaults: Policies) -> None:
    desk = [engineer("amy", group="servicedesk")]
    unknown = choose_assignee(defaults.assignment, "printer ink", desk)
    assert (unknown.group, unknown.engineer) == ("servicedesk", "amy")
    assert "category 'printer ink' has no rule; default group 'servicedesk'" in unknown.reason
    missing = choose_assignee(defaults.assignment, None, desk)
    assert missing.group == "servicedesk"
    assert missing.reason.startswith("no category")


def test_category_and_skills_ignore_case(defaults: Policies) -> None:
    team = [engineer("amy"), engineer("bo", skills=["DATABASE"], open_load=2)]
    assert choose_assignee(defaults.assignment, "Database", team).engineer == "bo"


def test_more_required_skills_rank_higher() -> None:
    policy = AssignmentPolicy.model_validate(
        {
            "default_group": "desk",
            "categories": {"database": {"group": "dba", "skills": ["mysql", "backup"]}},
        }
    )
    team = [
        engineer("amy", skills=["mysql"]),
        engineer("bo", skills=["mysql", "backup"], open_load=4),
    ]
    chosen = choose_assignee(policy, "database", team)
    assert chosen.engineer == "bo"
    assert "has 2/2 required skill(s) (backup, mysql)" in chosen.reason
    # Nobody has the skills: still assigned, by load.
    plain = [engineer("cy", open_load=1), engineer("dee", open_load=0)]
    assert choose_assignee(policy, "database", plain).engineer == "dee"


def test_candidate_validation() -> None:
    assert engineer("amy", skills=["a", "a"]).skills == frozenset({"a"})
    with pytest.raises(ValidationError):
        engineer("amy", capacity=-1)
