"""Compute a report: the periods, then every registered section inside one read snapshot."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.engine import Engine

from itilflow.policies import Policies, PolicyError, SlaPolicy
from itilflow.policies.loader import _explain, _line, _read_yaml
from itilflow.reports.db import existing_tables, snapshot, write_months
from itilflow.reports.figures import Report, SectionResult
from itilflow.reports.period import Span, latest_complete, parse_period, report_months
from itilflow.reports.sections import SECTIONS, SectionContext


def load_sla_policy(path: str | Path) -> SlaPolicy:
    """An SLA policy for a what-if run: a policy folder (its sla.yaml) or an sla.yaml file.

    Raises PolicyError naming the file and key, like load_policies.
    """
    location = Path(path)
    file = location / "sla.yaml" if location.is_dir() else location
    problems: list[str] = []
    data = _read_yaml(file, str(file), problems)
    if data is None:
        raise PolicyError(problems)
    try:
        return SlaPolicy.model_validate(data)
    except ValidationError as error:
        raise PolicyError(
            [_line(str(file), loc, message) for loc, message in _explain(error, SlaPolicy)]
        ) from None


def compute_report(
    engine: Engine,
    policies: Policies,
    *,
    period: str | None,
    now: datetime,
    span: Span = "month",
    what_if_policy: str | Path | None = None,
) -> Report:
    """Figures of `period` ("YYYY-MM", "YYYY-Qn" or "YYYY"; None: the last complete `span`
    before `now` in the report's time zone) and of as many periods of the same length before it
    as the policy says (compare_months, compare_quarters, compare_years), as known at `now`.

    Sections compute "months": any list of [start, end) periods, oldest first."""
    policy = policies.report
    zone = policy.zone
    month = parse_period(period, zone) if period else latest_complete(now, zone, span)
    compare = {
        "month": policy.compare_months,
        "quarter": policy.compare_quarters,
        "year": policy.compare_years,
    }[month.span]
    months = report_months(month, compare)
    what_if = None
    if what_if_policy is not None:
        what_if = (str(what_if_policy), load_sla_policy(what_if_policy))
    tables = existing_tables(engine)
    results: list[SectionResult] = []
    with snapshot(engine) as conn:
        write_months(conn, months, now)
        context = SectionContext(
            conn=conn,
            months=months,
            as_of=now,
            report_policy=policy,
            sla_policy=policies.sla,
            survey_scale=policies.routing.survey.scale,
            what_if=what_if,
        )
        for section in SECTIONS.values():
            missing = [table for table in section.tables if table not in tables]
            if missing:
                reason = f"table {', '.join(missing)} does not exist yet"
                results.append(SectionResult(key=section.key, status="no_data", reason=reason))
            elif section.compute is None:
                reason = "not part of the report yet"
                results.append(SectionResult(key=section.key, status="no_data", reason=reason))
            else:
                results.append(
                    SectionResult(key=section.key, status="ok", data=section.compute(context))
                )
    return Report(
        period=month.key,
        span=month.span,
        timezone=policy.timezone,
        months=[m.key for m in months],
        month_starts=[m.start for m in months],
        as_of=now,
        survey_scale=policies.routing.survey.scale,
        sections=results,
        what_if_policy=what_if[0] if what_if else None,
    )
