"""change.yaml's `acceptance` and problem.yaml's `post_incident`: shipped values, and mistakes
named by file and key."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from itilflow.policies import Policies, PolicyError, load_policies

Edit = Callable[[str, str, str], None]


def problems_of(policy_dir: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_policies(policy_dir)
    return caught.value.problems


def test_shipped_values(defaults: Policies) -> None:
    acceptance = defaults.change.acceptance
    assert (acceptance.required, acceptance.window, acceptance.on_reject) == (
        False,
        timedelta(days=5),
        "reopen",
    )
    post_incident = defaults.problem.post_incident
    assert post_incident.priorities == ["P1"]
    assert post_incident.stakeholders == ["reporter", "group_lead", "group_manager"]


def test_mistakes_are_named_by_file_and_key(policy_dir: Path, edit: Edit) -> None:
    edit("change.yaml", "  on_reject: reopen", "  on_reject: rollback")
    edit("problem.yaml", "stakeholders: [reporter,", "stakeholders: [customer,")
    assert problems_of(policy_dir) == [
        "change.yaml: acceptance.on_reject: expected one of reopen, close, got 'rollback'",
        "problem.yaml: post_incident.stakeholders[0]: expected one of reporter, assignee, "
        "group_lead, group_manager, got 'customer'",
    ]


def test_an_empty_window_is_refused(policy_dir: Path, edit: Edit) -> None:
    edit("change.yaml", "  window: 5d", "  window: 0m")
    [problem] = problems_of(policy_dir)
    assert problem.startswith("change.yaml: acceptance.window: expected a duration above 0")
