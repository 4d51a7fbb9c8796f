"""Running with change.yaml changed for one test."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from itilflow.policies import default_policy_dir


def use_change_policy(rt: Any, **changes_to_policy: Any) -> None:
    """Run with change.yaml changed as given: the tasks read rt.policies, so build apps (and
    start runs) after this."""
    change = rt.policies.change.model_copy(update=changes_to_policy)
    rt.policies = rt.policies.model_copy(update={"change": change})


def without_calendar(rt: Any) -> None:
    """No maintenance windows and no freezes: a change without a planned start runs as soon as
    it is approved, and no date of the year changes its risk. For tests of the change process
    itself; the calendar's rules have tests of their own (tests/policies/
    test_next_allowed_start.py, tests/security/test_approvals.py)."""
    use_change_policy(rt, maintenance_windows=[], freeze_windows=[])


def policy_dir_without_freezes(target: Path) -> Path:
    """A copy of the shipped policy folder in `target` whose change.yaml has no freeze windows,
    for a stack (ITILFLOW_POLICY_DIR) whose demo change must run whatever today's date: in the
    shipped freezes it would be refused or scored high risk, and wait for the CAB."""
    target.mkdir(parents=True, exist_ok=True)
    for shipped in default_policy_dir().glob("*.yaml"):
        shutil.copyfile(shipped, target / shipped.name)
    change = target / "change.yaml"
    values = yaml.safe_load(change.read_text(encoding="utf-8"))
    assert values["freeze_windows"], (
        "change.yaml ships freezes: drop this copy if it no longer does"
    )
    values["freeze_windows"] = []
    change.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    return target
