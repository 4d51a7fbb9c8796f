"""The Prefect UI's forms offer the policies' choices and a period pattern (month, quarter or year)
for report periods:
read from the deployments that `prefect deploy` registers on the test server, as the UI reads
them. A value outside them is refused by the server (enforce_parameter_schema) before any run
exists, and by the flow itself with a message that says what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import get_client
from prefect.exceptions import ParameterTypeError, PrefectHTTPStatusError

from itilflow.flows.form_choices import form_choices
from itilflow.flows.forms import report_incident
from itilflow.flows.report import monthly_health_report, quarterly_health_report
from itilflow.policies import load_policies
from tests.faults.test_workers import base_env, deploy

pytestmark = pytest.mark.usefixtures("prefect_server")


def branch(schema: dict, name: str) -> dict:
    """The parameter's schema, its non-null branch for an optional one."""
    found = schema["properties"][name]
    return next((b for b in found.get("anyOf", []) if b.get("type") != "null"), found)


async def test_the_deployed_forms_offer_the_policies_choices(rt, tmp_path: Path):
    deploy(
        base_env(rt, tmp_path),
        "report-incident",
        "monthly-health-report",
        "quarterly-health-report",
        "yearly-health-report",
    )
    expected = form_choices(load_policies(None))
    async with get_client() as client:
        report = await client.read_deployment_by_name("report-incident/report-incident")
        monthly = await client.read_deployment_by_name(
            "monthly-health-report/monthly-health-report"
        )
        quarterly = await client.read_deployment_by_name(
            "quarterly-health-report/quarterly-health-report"
        )
        yearly = await client.read_deployment_by_name("yearly-health-report/yearly-health-report")
        form = report.parameter_openapi_schema
        assert branch(form, "impact")["enum"] == expected["impact"] == ["high", "medium", "low"]
        assert form["properties"]["impact"]["default"] == "medium", "a select, pre-filled"
        assert branch(form, "urgency")["enum"] == expected["urgency"]
        assert branch(form, "category")["enum"] == expected["category"]
        assert "network" in expected["category"] and "actor" not in form["properties"]
        # The issue asks for quarters and years too: YYYY-MM, YYYY-Qn or YYYY.
        for deployment in (monthly, quarterly, yearly):
            period = branch(deployment.parameter_openapi_schema, "period")
            assert period["pattern"] == "^[0-9]{4}(-(0[1-9]|1[0-2])|-Q[1-4])?$"
        assert branch(monthly.parameter_openapi_schema, "language")["enum"] == ["en", "zh_CN"]

        for deployment, parameters, bad in (
            (monthly, {"period": "last month please"}, "last month please"),
            (monthly, {"period": "2026-13"}, "2026-13"),
            (quarterly, {"period": "2026-Q5"}, "2026-Q5"),
            (quarterly, {"period": "26"}, "26"),
            (yearly, {"period": "2026-Q"}, "2026-Q"),
            (report, {"title": "disk full", "impact": "catastrophic"}, "catastrophic"),
            (report, {"title": "disk full", "category": "plumbing"}, "plumbing"),
        ):
            with pytest.raises(PrefectHTTPStatusError) as refused:
                await client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
            assert refused.value.response.status_code == 409, refused.value
            assert bad in refused.value.response.text


def test_the_flows_refuse_a_bad_value_saying_what_was_expected():
    expected = r"expected a month \(YYYY-MM, e.g. 2026-10\), a quarter \(YYYY-Qn, e.g. 2026-Q3\)"
    for flow, bad in (
        (monthly_health_report, "last month please"),
        (quarterly_health_report, "Q3"),
    ):
        with pytest.raises(ParameterTypeError, match=expected):
            flow.validate_parameters({"period": bad})
    for period in ("2026-10", "2026-Q3", "2026"):
        assert quarterly_health_report.validate_parameters({"period": period})["period"] == period
    with pytest.raises(ParameterTypeError, match="'high', 'medium' or 'low'"):
        report_incident.validate_parameters({"title": "disk full", "urgency": "asap"})
    assert report_incident.validate_parameters({"title": "disk full"})["impact"] == "medium"
