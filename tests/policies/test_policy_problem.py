"""problem.yaml: the defaults, a folder without it, clear errors, owners, and prefect.yaml in
step with its schedule."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from itilflow.policies import (
    Policies,
    PolicyError,
    ProblemPolicy,
    load_policies,
    problem_owner,
    quiet_until,
)

PROJECT = Path(__file__).resolve().parents[2]
Edit = Callable[[str, str, str], None]


def problems_of(directory: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_policies(directory)
    return caught.value.problems


def test_defaults(defaults: Policies) -> None:
    problem = defaults.problem
    assert problem.schedule == "0 9 * * 1" and problem.timezone == "Asia/Shanghai"
    assert {kind: (r.min_incidents, r.window) for kind, r in problem.rules().items()} == {
        "ci": (3, timedelta(days=7)),
        "category": (5, timedelta(days=7)),
        "fingerprint": (3, timedelta(days=7)),
    }
    assert problem.quiet_period == timedelta(days=14)
    assert problem.notify_tags == ["team-chat"]
    assert problem.known_error_match.keyword_hits == 2
    # What the model assumes when a key is left out is what the packaged file says.
    assert ProblemPolicy(owners=problem.owners, notify_tags=problem.notify_tags) == problem


def test_a_folder_without_problem_yaml_uses_the_packaged_one(policy_dir: Path) -> None:
    (policy_dir / "problem.yaml").unlink()
    assert load_policies(policy_dir).problem == load_policies().problem


def test_mistakes_are_named_by_file_and_key(policy_dir: Path, edit: Edit) -> None:
    edit("problem.yaml", 'schedule: "0 9 * * 1"', 'schedule: "weekly"')
    edit("problem.yaml", "timezone: Asia/Shanghai", "timezone: Asia/Beijing")
    edit("problem.yaml", "ci: {min_incidents: 3, window: 7d}", "ci: {min_incidents: 1, window: 7d}")
    edit(
        "problem.yaml",
        "category: {min_incidents: 5, window: 7d}",
        "category: {min_incidents: 5, window: soon}",
    )
    edit("problem.yaml", "fingerprint: {min", "fingerprints: {min")
    edit("problem.yaml", "[new, assigned,", "[new, assigned, escalated,")
    edit(
        "problem.yaml",
        "software: {engineer: chen}",
        "software: {engineer: chen, group: applications}",
    )
    edit("problem.yaml", "quiet_period: 14d", "quiet_period: two weeks")
    found = problems_of(policy_dir)
    assert all(line.startswith("problem.yaml: ") for line in found)
    by_key = {line.split(": ")[1]: line for line in found}
    assert "expected a cron line of five fields" in by_key["schedule"]
    assert "expected an IANA time zone" in by_key["timezone"]
    assert by_key["detect.ci.min_incidents"].endswith("expected a number at least 2, got 1")
    assert "expected a duration like '30m'" in by_key["detect.category.window"]
    assert "expected one of ci, category, fingerprint" in by_key["detect.fingerprints"]
    assert "expected one of new, assigned" in by_key["statuses[2]"]
    assert "exactly one of 'engineer' or 'group'" in by_key["owners.software"]
    assert "expected a duration" in by_key["quiet_period"]


def test_at_least_one_rule_is_enabled(policy_dir: Path, edit: Edit) -> None:
    for kind in ("ci: {", "category: {", "fingerprint: {"):
        edit("problem.yaml", kind, kind + "enabled: false, ")
    [problem] = problems_of(policy_dir)
    assert problem.startswith("problem.yaml: detect: expected at least one enabled rule")


def test_a_disabled_or_missing_rule_is_not_looked_for(policy_dir: Path, edit: Edit) -> None:
    edit("problem.yaml", "category: {", "category: {enabled: false, ")
    edit("problem.yaml", "  fingerprint: {min_incidents: 3, window: 7d}\n", "")
    assert list(load_policies(policy_dir).problem.rules()) == ["ci"]


def test_owner_by_category_or_the_default(defaults: Policies) -> None:
    assert problem_owner(defaults.problem, "software").engineer == "chen"
    assert problem_owner(defaults.problem, "hardware").group == "hardware"
    fallback = problem_owner(defaults.problem, "printing")
    assert (fallback.engineer, fallback.group, fallback.reason) == (
        None,
        "servicedesk",
        "default owner",
    )
    assert problem_owner(defaults.problem, None).group == "servicedesk"


def test_quiet_until(defaults: Policies) -> None:
    fixed = datetime(2026, 11, 23, tzinfo=UTC)
    assert quiet_until(defaults.problem, fixed) == datetime(2026, 12, 7, tzinfo=UTC)


def test_prefect_yaml_runs_the_review_on_the_policy_schedule(defaults: Policies) -> None:
    deployments = yaml.safe_load((PROJECT / "prefect.yaml").read_text())["deployments"]
    [deployment] = [d for d in deployments if d["name"] == "review-problems"]
    assert deployment["entrypoint"] == "flows/problem.py:review_problems"
    policy = defaults.problem
    assert deployment["schedules"] == [{"cron": policy.schedule, "timezone": policy.timezone}]
