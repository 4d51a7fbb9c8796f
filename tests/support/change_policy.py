"""Running with change.yaml changed for one test."""

from __future__ import annotations

from typing import Any


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
