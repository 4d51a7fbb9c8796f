"""deploy/prometheus and deploy/grafana: the alert rules pass `promtool test rules`, the scrape
configuration is valid, and every itilflow metric the rules and the dashboard query is one that
the gateway or the runner exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import Session

from itilflow import clock
from itilflow.gateway.metrics import read_figures
from itilflow.metrics import GATEWAY, RUNNER

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "itilflow.json"
METRIC_NAME = re.compile(r"\b(itilflow_[a-z_]+|process_[a-z_]+)\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is not installed (Debian: prometheus)")
    return subprocess.run(
        [binary, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )


def exported_names(rt: Any) -> set[str]:
    """Every sample name /metrics can show: the two registries' and the database's."""
    with Session(rt.engine) as session:
        families = [*GATEWAY.collect(), *RUNNER.collect(), *read_figures(session, clock.now())]
    names = {"itilflow_database_metrics_up"}  # DatabaseFigures' own
    for family in families:
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def rule_queries() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "itilflow-rules.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_the_alert_rules_pass_their_promtool_tests() -> None:
    checked = promtool("check", "rules", "itilflow-rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "itilflow-rules.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_promtool_test() -> None:
    rules = yaml.safe_load((PROMETHEUS / "itilflow-rules.yml").read_text())
    tests = yaml.safe_load((PROMETHEUS / "itilflow-rules.test.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert alerts == fired


def test_the_scrape_configuration_is_valid() -> None:
    checked = promtool("check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_and_the_rules_query_only_exported_metrics(rt: Any) -> None:
    exported = exported_names(rt)
    queries = dashboard_queries() + rule_queries()
    used = {name for query in queries for name in METRIC_NAME.findall(query)}
    assert used - exported == set(), f"not exported: {sorted(used - exported)}"
    # And the dashboard shows each kind of figure the issue asks for.
    for wanted in (
        "itilflow_gateway_requests_total",
        "itilflow_alerts_total",
        "itilflow_incidents_opened_total",
        "itilflow_incidents_open",
        "itilflow_sla_breaches_total",
        "itilflow_trigger_lag_seconds",
        "itilflow_triggers_due",
        "itilflow_notifications_total",
        "itilflow_notifications_kept_total",
        "itilflow_changes",
        "itilflow_inspection_checks",
    ):
        assert wanted in used, wanted


def test_the_dashboard_is_grafana_json_with_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "itilflow" and dashboard["panels"]
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
