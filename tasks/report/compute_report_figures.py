from __future__ import annotations

from prefect import task

from itilflow import clock
from itilflow.reports import Report, Span, compute_report
from itilflow.runtime import runtime


@task(name="compute-report-figures", retries=1, retry_delay_seconds=5)
def compute_report_figures(
    period: str | None, what_if_policy_dir: str | None, span: Span = "month"
) -> Report:
    """Every section's figures for `period` (None: the last complete `span`) and the periods
    before it, as known now."""
    rt = runtime()
    return compute_report(
        rt.engine,
        rt.policies,
        period=period,
        span=span,
        now=clock.now(),
        what_if_policy=what_if_policy_dir,
    )
