"""inspection.yaml: the defaults, clear errors, prefect.yaml in step, and the pure decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from itilflow.policies import Policies, PolicyError, load_policies
from itilflow.policies.inspection import (
    Levels,
    LowLevels,
    check_name,
    judge,
    judge_low,
    seconds_until_full,
    worst,
)

PROJECT = Path(__file__).resolve().parents[2]


def problems(directory: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_policies(directory)
    return caught.value.problems


def write(policy_dir: Path, text: str) -> None:
    (policy_dir / "inspection.yaml").write_text(text, encoding="utf-8")


GROUP = """
groups:
  core:
    schedule: "*/5 * * * *"
    timezone: Asia/Shanghai
    targets:
      web:
        checks:
{checks}
"""


def with_checks(policy_dir: Path, *checks: str) -> None:
    write(policy_dir, GROUP.format(checks="\n".join(f"          - {c}" for c in checks)))


def test_defaults(defaults: Policies) -> None:
    inspection = defaults.inspection
    assert sorted(inspection.groups) == ["hosts", "platform"]
    assert inspection.retries == 1 and inspection.timeout == timedelta(seconds=5)
    [node] = inspection.groups["hosts"].targets["localhost"].checks
    assert check_name(node) == "node"
    assert inspection.incident_for(node).urgency == "high"
    assert inspection.incident_for(node).open_on == ["critical", "error"]
    assert inspection.thresholds_for(node).filesystem_percent == Levels(warning=85, critical=95)
    [gateway] = inspection.groups["platform"].targets["gateway"].checks
    assert (check_name(gateway), inspection.incident_for(gateway).category) == ("http", "software")


def test_prefect_yaml_has_one_deployment_per_group_on_its_schedule(defaults: Policies) -> None:
    """The engine schedules from prefect.yaml; the policy names the groups: keep them in step."""
    deployments = yaml.safe_load((PROJECT / "prefect.yaml").read_text())["deployments"]
    inspections = {
        d["name"]: d for d in deployments if d["entrypoint"].startswith("flows/inspection.py")
    }
    assert sorted(inspections) == sorted(f"inspection-{g}" for g in defaults.inspection.groups)
    for name, group in defaults.inspection.groups.items():
        deployment = inspections[f"inspection-{name}"]
        assert deployment["entrypoint"] == "flows/inspection.py:patrol_inspection"
        assert deployment["parameters"] == {"group": name}
        assert deployment["schedules"] == [{"cron": group.schedule, "timezone": group.timezone}]
        assert deployment["enforce_parameter_schema"] is True


def test_a_folder_without_inspection_yaml_reads_the_default(policy_dir: Path) -> None:
    (policy_dir / "inspection.yaml").unlink()
    assert "platform" in load_policies(policy_dir).inspection.groups


def test_overrides_replace_single_keys(policy_dir: Path) -> None:
    with_checks(
        policy_dir,
        "{type: node_exporter, url: 'http://h:9100/metrics', "
        "thresholds: {filesystem_percent: {warning: 70}}, incident: {impact: high}}",
    )
    inspection = load_policies(policy_dir).inspection
    [check] = inspection.groups["core"].targets["web"].checks
    levels = inspection.thresholds_for(check)
    assert levels.filesystem_percent == Levels(warning=70, critical=None)
    assert levels.memory_percent == Levels(warning=90, critical=97)
    mapping = inspection.incident_for(check)
    assert (mapping.impact, mapping.urgency, mapping.category) == ("high", "medium", "hardware")


def test_check_errors_name_the_key(policy_dir: Path) -> None:
    with_checks(
        policy_dir,
        "{type: smtp, host: mail}",
        "{type: http}",
        "{type: tcp, host: db, port: 70000}",
        "{type: tls, host: a, days_before_expiry: {warning: 3, critical: 10}}",
    )
    found = problems(policy_dir)
    where = "inspection.yaml: groups.core.targets.web.checks"
    assert found == [
        f"{where}[0].type: expected one of node_exporter, promql, http, tcp, tls, got 'smtp'"
    ]
    with_checks(
        policy_dir,
        "{type: http}",
        "{type: tcp, host: db, port: 70000}",
        "{type: tls, host: a, days_before_expiry: {warning: 3, critical: 10}}",
        "{type: http, url: 'http://a', expect: ok}",
    )
    found = problems(policy_dir)
    assert found[0] == f"{where}[0].http.url: required key is missing"
    assert found[1] == f"{where}[1].tcp.port: expected a number at most 65535, got 70000"
    assert found[2] == f"{where}[2].tls.days_before_expiry.critical: expected at most warning (3)"
    assert found[3].startswith(f"{where}[3].http.expect: unknown key 'expect'")


def test_two_checks_of_a_target_need_their_own_names(policy_dir: Path) -> None:
    with_checks(policy_dir, "{type: tcp, host: a, port: 22}", "{type: tcp, host: a, port: 5432}")
    [problem] = problems(policy_dir)
    assert problem == (
        "inspection.yaml: groups.core.targets.web.checks[1].name: 'tcp' is already the name of "
        "checks[0]; give each check of a target its own name"
    )


# Longer than a file name may be: ZoneInfo raises OSError for it, not ZoneInfoNotFoundError.
LONG_ZONE = "Europe/" + "x" * 300


def test_schedule_timezone_and_target_names(policy_dir: Path) -> None:
    write(
        policy_dir,
        """
groups:
  a:
    schedule: "every 5 minutes"
    timezone: Mars/Olympus
    targets:
      web: {checks: [{type: tcp, host: a, port: 1}]}
  c:
    schedule: "0 * * * *"
    timezone: Europe/LONG
    targets:
      api: {checks: [{type: tcp, host: a, port: 1}]}
  b:
    schedule: "0 * * * *"
    targets:
      web: {checks: [{type: tcp, host: a, port: 1}]}
""".replace("Europe/LONG", LONG_ZONE),
    )
    found = problems(policy_dir)
    assert found[0].startswith("inspection.yaml: groups.a.schedule: expected a cron line")
    assert found[1].startswith("inspection.yaml: groups.a.timezone: expected an IANA time zone")
    assert found[2].startswith("inspection.yaml: groups.c.timezone: expected an IANA time zone")
    write(
        policy_dir,
        (policy_dir / "inspection.yaml")
        .read_text()
        .replace("every 5 minutes", "*/5 * * * *")
        .replace("Mars/Olympus", "UTC")
        .replace(LONG_ZONE, "UTC"),
    )
    [problem] = problems(policy_dir)
    assert problem.startswith("inspection.yaml: groups.b.targets.web: target 'web' is also in")


def test_incident_levels_must_exist_in_priority_yaml(policy_dir: Path) -> None:
    with_checks(policy_dir, "{type: tcp, host: a, port: 1, incident: {impact: huge}}")
    [problem] = problems(policy_dir)
    assert problem == (
        "inspection.yaml: groups.core.targets.web.checks[0].incident.impact: 'huge' is not an "
        "impact level in priority.yaml; expected one of high, medium, low"
    )


def test_an_unknown_group_names_the_known_ones(defaults: Policies) -> None:
    with pytest.raises(ValueError, match="unknown inspection group 'x': .* hosts, platform"):
        defaults.inspection.group("x")


def test_the_stacks_own_urls_follow_the_settings_passed_in() -> None:
    policies = load_policies(
        None,
        stack_urls={
            "gateway_url": "http://127.0.0.1:18080/",
            "prefect_api_url": "http://127.0.0.1:14200/api",
            "node_exporter_url": "http://127.0.0.1:19100",
        },
    )
    groups = policies.inspection.groups
    [gateway] = groups["platform"].targets["gateway"].checks
    [prefect] = groups["platform"].targets["prefect-server"].checks
    [node] = groups["hosts"].targets["localhost"].checks
    assert gateway.url == "http://127.0.0.1:18080/health"  # type: ignore[union-attr]
    assert prefect.url == "http://127.0.0.1:14200/api/health"  # type: ignore[union-attr]
    assert node.url == "http://127.0.0.1:19100/metrics"  # type: ignore[union-attr]
    # Without values (check-policies, tools): the default ports.
    [default_gateway] = load_policies(None).inspection.groups["platform"].targets["gateway"].checks
    assert default_gateway.url == "http://127.0.0.1:8080/health"  # type: ignore[union-attr]


def test_an_unknown_placeholder_is_named_with_the_known_ones(policy_dir: Path) -> None:
    with_checks(
        policy_dir,
        '{type: http, url: "{gateway_url}/health"}',
        '{name: peer, type: http, url: "{gateway}/health"}',
    )
    assert problems(policy_dir) == [
        "inspection.yaml: groups.core.targets.web.checks[1].http.url: unknown placeholder "
        "'{gateway}'; expected one of {gateway_url}, {prefect_api_url}, {node_exporter_url}"
    ]


# --- pure decisions ------------------------------------------------------------------------------


def test_judge_reaches_a_level_at_its_value() -> None:
    levels = Levels(warning=85, critical=95)
    assert [judge(v, levels) for v in (84.9, 85, 94.9, 95, 100)] == [
        "ok",
        "warning",
        "warning",
        "critical",
        "critical",
    ]
    assert judge(1e9, Levels()) == "ok"
    low = LowLevels(warning=21, critical=7)
    assert [judge_low(v, low) for v in (30, 21, 8, 7, -1)] == [
        "ok",
        "warning",
        "warning",
        "critical",
        "critical",
    ]
    assert worst(["ok", "critical", "warning"]) == "critical"
    assert worst(["critical", "error"]) == "error"
    assert worst([]) == "ok"


def test_seconds_until_full() -> None:
    t0 = datetime(2026, 11, 23, tzinfo=UTC)
    hour = timedelta(hours=1)
    assert seconds_until_full([(t0, 60.0), (t0 + hour, 70.0)]) == pytest.approx(3 * 3600)
    # Least squares through noise: about 10 points an hour.
    noisy = [(t0, 50.0), (t0 + hour, 61.0), (t0 + 2 * hour, 69.0), (t0 + 3 * hour, 80.0)]
    assert seconds_until_full(noisy) == pytest.approx(2 * 3600, rel=0.05)
    assert seconds_until_full([(t0, 70.0), (t0 + hour, 60.0)]) is None  # shrinking
    assert seconds_until_full([(t0, 70.0), (t0 + hour, 70.0)]) is None  # flat
    assert seconds_until_full([(t0, 70.0)]) is None
    assert seconds_until_full([(t0, 70.0), (t0, 80.0)]) is None  # no time between
