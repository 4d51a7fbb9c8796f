"""Patrol inspection history: one row per run of a target group, one per check result.

Results are only added, so a target's trend over time is read back from them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, Session, SQLModel, col, select

from itilflow import clock
from itilflow.models.db import UTCDateTime


class InspectionRun(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    group: str = Field(max_length=100, index=True)
    flow_run_id: str | None = Field(default=None, max_length=64)
    started_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime, index=True)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    targets: int = 0
    ok: int = 0
    warning: int = 0
    critical: int = 0
    error: int = 0

    @property
    def checks(self) -> int:
        return self.ok + self.warning + self.critical + self.error


class CheckResult(SQLModel, table=True):
    __table_args__ = (Index("ix_checkresult_target_check_at", "target", "check_name", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="inspectionrun.id", index=True)
    target: str = Field(max_length=100)
    # "http", "tcp", "node.filesystem", ...: the check's name (and a node_exporter metric).
    check_name: str = Field(max_length=100)
    check_type: str = Field(max_length=32)
    status: str = Field(max_length=16, index=True)  # ok, warning, critical, error
    value: float | None = None
    unit: str = Field(default="", max_length=16)
    message: str = Field(default="", max_length=2000)
    # Per-item figures, e.g. used percent per mountpoint (the fill prediction reads them back).
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    attempts: int = 1
    at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    incident_id: int | None = Field(default=None, foreign_key="incident.id")


def start_inspection_run(
    *, session: Session, group: str, flow_run_id: str | None = None
) -> InspectionRun:
    run = InspectionRun(group=group, flow_run_id=flow_run_id)
    session.add(run)
    session.flush()
    return run


def add_check_results(
    *, session: Session, run_id: int, results: Iterable[dict[str, Any]]
) -> InspectionRun:
    """Store a run's results and its counts; a second call for the same run stores nothing."""
    run = session.get(InspectionRun, run_id)
    if run is None:
        raise LookupError(f"inspection run {run_id} not found")
    if run.finished_at is not None:
        return run
    rows = [CheckResult(run_id=run_id, **result) for result in results]
    session.add_all(rows)
    for status in ("ok", "warning", "critical", "error"):
        setattr(run, status, sum(1 for row in rows if row.status == status))
    run.targets = len({row.target for row in rows})
    run.finished_at = clock.now()
    session.add(run)
    return run


def list_run_results(*, session: Session, run_id: int) -> list[CheckResult]:
    statement = (
        select(CheckResult)
        .where(CheckResult.run_id == run_id)
        .order_by(col(CheckResult.target), col(CheckResult.check_name))
    )
    return list(session.exec(statement))


def get_target_history(
    *,
    session: Session,
    target: str,
    check: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[CheckResult]:
    """The latest `limit` results of a target (one check, or all), oldest first: its trend."""
    statement = select(CheckResult).where(CheckResult.target == target)
    if check:
        statement = statement.where(CheckResult.check_name == check)
    if since is not None:
        statement = statement.where(col(CheckResult.at) >= since)
    statement = statement.order_by(col(CheckResult.at).desc(), col(CheckResult.id).desc())
    rows = list(session.exec(statement.limit(limit)))
    rows.reverse()
    return rows


def get_results_since(
    *, session: Session, targets: Iterable[str], check_suffix: str, since: datetime
) -> list[CheckResult]:
    """Results of these targets' checks named `*<check_suffix>` since `since`, oldest first."""
    statement = (
        select(CheckResult)
        .where(
            col(CheckResult.target).in_(list(targets)),
            col(CheckResult.check_name).endswith(check_suffix),
            col(CheckResult.at) >= since,
        )
        .order_by(col(CheckResult.at), col(CheckResult.id))
    )
    return list(session.exec(statement))
