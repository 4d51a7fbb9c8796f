"""The report's sections: a registry, so a process (incidents, changes, problems, inspections)
adds its section without touching the others.

A section names the tables it reads. When one is missing (the process does not exist yet in
this installation) the section shows "no data" and its figures are not computed. A section
registered without a `compute` function is a placeholder: "no data" even once its tables exist.

To add one: write `compute(context) -> Figures` (SQL on `context.conn`, a ReportConnection inside
the report's read snapshot with the TEMP table `_rpt_month` (idx, key, start_s, end_s, end_eff_s,
start_at, end_at) already written by compute_report; the SQL must run on SQLite and PostgreSQL,
see itilflow.reports.db), a template
`templates/_base/sections/<key>.html` that reads `section.data`, a title in each language's
`strings.html`, and `register_section(...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from itilflow.policies import ReportPolicy, SlaPolicy
from itilflow.reports.callbacks import CALLBACK, compute_callback_section
from itilflow.reports.db import ReportConnection
from itilflow.reports.figures import Figures
from itilflow.reports.incidents import INCIDENT, TIMELINE, compute_incident_section
from itilflow.reports.period import Period
from itilflow.reports.proactive import PROACTIVE, compute_proactive_section
from itilflow.reports.processes import (
    CHANGE,
    CHECK_RESULT,
    PROBLEM,
    PROBLEM_ENTRY,
    compute_change_section,
    compute_inspection_section,
    compute_problem_section,
)


@dataclass(frozen=True)
class SectionContext:
    conn: ReportConnection
    months: list[Period]
    as_of: datetime
    report_policy: ReportPolicy
    sla_policy: SlaPolicy
    survey_scale: int
    # (name shown, policy) of a what-if run
    what_if: tuple[str, SlaPolicy] | None = None


@dataclass(frozen=True)
class Section:
    key: str
    tables: tuple[str, ...]
    compute: Callable[[SectionContext], Figures] | None = None


SECTIONS: dict[str, Section] = {}


def register_section(section: Section) -> Section:
    """Add (or replace) a section; sections appear in the order they were first registered."""
    SECTIONS[section.key] = section
    return section


def _incidents(context: SectionContext) -> Figures:
    return compute_incident_section(
        context.conn,
        months=context.months,
        as_of=context.as_of,
        sla_policy=context.sla_policy,
        survey_scale=context.survey_scale,
        downtime_priorities=context.report_policy.downtime_priorities,
        top=context.report_policy.top,
        what_if=context.what_if,
    )


register_section(Section("incidents", (INCIDENT, TIMELINE), _incidents))
register_section(
    Section(
        "changes",
        (CHANGE,),
        lambda c: compute_change_section(c.conn, c.months, c.as_of),
    )
)
register_section(
    Section(
        "problems",
        (PROBLEM, PROBLEM_ENTRY),
        lambda c: compute_problem_section(c.conn, c.months, c.as_of),
    )
)
register_section(
    Section(
        "inspections",
        (CHECK_RESULT,),
        lambda c: compute_inspection_section(c.conn, c.months, c.as_of),
    )
)
register_section(
    Section(
        "proactive",
        (PROACTIVE,),
        lambda c: compute_proactive_section(c.conn, c.months, c.as_of),
    )
)
# The survey callbacks in levels (issue 15 item 4): reports/callbacks.py.
register_section(
    Section(
        "callbacks",
        (CALLBACK,),
        lambda c: compute_callback_section(c.conn, c.months, c.as_of),
    )
)
