"""report.yaml: the defaults, a folder without it, clear errors, and prefect.yaml in step."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from itilflow.policies import PolicyError, ReportPolicy, default_policy_dir, load_policies

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A copy of every default policy file."""
    target = tmp_path / "policies"
    target.mkdir()
    for source in default_policy_dir().iterdir():
        if source.name.endswith(".yaml"):
            (target / source.name).write_text(source.read_text(encoding="utf-8"))
    return target


def problems(directory: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_policies(directory)
    return caught.value.problems


def test_defaults() -> None:
    report = load_policies().report
    assert report.schedule == "0 8 1 * *"
    assert report.timezone == "Asia/Shanghai"
    assert report.language == "en"
    assert report.recipients == ["service-manager@example.com"]
    assert report.chat_tags == ["team-chat"]
    assert report.compare_months == 6
    assert (report.compare_quarters, report.compare_years) == (4, 2)
    assert report.quarterly_schedule == "0 8 1 1,4,7,10 *"
    assert report.yearly_schedule == "0 8 1 1 *"
    assert report.downtime_priorities == ["P1", "P2"]
    # What the model assumes when a key is left out is what the packaged file says.
    assert ReportPolicy(recipients=report.recipients, chat_tags=report.chat_tags) == report


def test_a_folder_without_report_yaml_uses_the_packaged_one(policy_dir: Path) -> None:
    (policy_dir / "report.yaml").unlink()
    assert load_policies(policy_dir).report == load_policies().report


def test_mistakes_are_named_by_file_and_key(policy_dir: Path) -> None:
    path = policy_dir / "report.yaml"
    text = path.read_text()
    text = text.replace('schedule: "0 8 1 * *"', 'schedule: "0 8 32 * *"')
    text = text.replace("timezone: Asia/Shanghai", "timezone: Asia/Beijing")
    text = text.replace("  - service-manager@example.com", "  - service-manager")
    text = text.replace("compare_months: 6", "compare_months: 60")
    text = text.replace("chat_tags: [team-chat]", "chat_tag: [team-chat]")
    path.write_text(text)
    found = problems(policy_dir)
    assert [line.split(":")[1].strip() for line in found] == [
        "schedule",
        "timezone",
        "recipients",
        "compare_months",
        "chat_tag",
    ]
    assert all(line.startswith("report.yaml: ") for line in found)
    assert "expected a valid cron line like '0 8 1 * *'" in found[0]
    assert "expected an IANA time zone" in found[1]
    assert "expected email addresses" in found[2]
    assert found[3] == "report.yaml: compare_months: expected a number at most 24, got 60"
    assert "did you mean 'chat_tags'?" in found[4]


def test_a_cron_line_needs_five_fields(policy_dir: Path) -> None:
    path = policy_dir / "report.yaml"
    path.write_text(path.read_text().replace('"0 8 1 * *"', '"monthly"'))
    [problem] = problems(policy_dir)
    assert problem.startswith("report.yaml: schedule: expected a cron line of five fields")


def test_prefect_yaml_runs_the_report_on_the_policy_schedule() -> None:
    deployments = yaml.safe_load((PROJECT / "prefect.yaml").read_text())["deployments"]
    [deployment] = [d for d in deployments if d["name"] == "monthly-health-report"]
    assert deployment["entrypoint"] == "flows/report.py:monthly_health_report"
    report = load_policies().report
    assert deployment["schedules"] == [{"cron": report.schedule, "timezone": report.timezone}]


def test_quarterly_and_yearly_schedules_run_on_the_first_day_of_their_period(
    policy_dir: Path,
) -> None:
    path = policy_dir / "report.yaml"
    text = path.read_text()
    text = text.replace('quarterly_schedule: "0 8 1 1,4,7,10 *"', 'quarterly_schedule: "0 8 1 * *"')
    text = text.replace('yearly_schedule: "0 8 1 1 *"', 'yearly_schedule: "0 8 2 1 *"')
    path.write_text(text)
    quarterly, yearly = problems(policy_dir)
    assert quarterly.startswith(
        "report.yaml: quarterly_schedule: expected a cron line that runs on"
    )
    assert "January, April, July and October only" in quarterly and "2026-02-01" in quarterly
    assert yearly.startswith("report.yaml: yearly_schedule: expected a cron line that runs on")
    assert "the first day of January only" in yearly and "2026-01-02" in yearly


def test_prefect_yaml_runs_the_quarterly_and_yearly_reports_on_the_policy_schedules() -> None:
    deployments = {
        d["name"]: d for d in yaml.safe_load((PROJECT / "prefect.yaml").read_text())["deployments"]
    }
    report = load_policies().report
    for name, flow, cron in (
        ("quarterly-health-report", "quarterly_health_report", report.quarterly_schedule),
        ("yearly-health-report", "yearly_health_report", report.yearly_schedule),
    ):
        assert deployments[name]["entrypoint"] == f"flows/report.py:{flow}"
        assert deployments[name]["schedules"] == [{"cron": cron, "timezone": report.timezone}]
