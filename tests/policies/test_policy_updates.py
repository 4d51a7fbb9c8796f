"""sla.yaml's progress_updates: the interval between two updates to the reporter, checked."""

from pathlib import Path

from tests.policies.test_policy_loader import Edit, problems_of


def test_an_interval_under_five_minutes_is_refused_by_name(policy_dir: Path, edit: Edit) -> None:
    edit("sla.yaml", "P1: 30m", "P1: 1m")
    assert problems_of(policy_dir) == [
        "sla.yaml: progress_updates.P1: expected at least 5m: each interval mails the reporter, "
        "more often floods their mailbox"
    ]


def test_an_unknown_priority_is_refused(policy_dir: Path, edit: Edit) -> None:
    edit("sla.yaml", "P2: 2h", "P7: 2h")
    [problem] = problems_of(policy_dir)
    assert problem.startswith("sla.yaml: progress_updates.P7")
