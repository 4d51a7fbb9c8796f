"""Change requests, their append-only timeline, and approval requests (one per emailed link)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, Session, SQLModel, col, select

from itilflow import clock
from itilflow.models.db import UTCDateTime
from itilflow.models.timeline import TimelineFields, append_only


class ChangeStatus(StrEnum):
    submitted = "submitted"
    awaiting_approval = "awaiting_approval"
    approved = "approved"
    scheduled = "scheduled"
    implementing = "implementing"
    successful = "successful"
    rolled_back = "rolled_back"
    rollback_failed = "rollback_failed"
    backup_failed = "backup_failed"
    rejected = "rejected"
    refused = "refused"
    expired = "expired"
    cancelled = "cancelled"
    # The run died while the change was being applied: someone must look before anything else.
    crashed = "crashed"
    # Implemented and verified by the engineers; the requester tests the business function and
    # accepts or rejects (change.yaml `acceptance`). At most 17 letters: SQLite's column is
    # VARCHAR(17) from the baseline (migration 0014 adds the members to PostgreSQL's type).
    awaiting_signoff = "awaiting_signoff"
    # The requester rejected the implemented change and the policy closes it so.
    customer_rejected = "customer_rejected"


# A change may still be edited (and its approvals restarted) in these states.
EDITABLE = (
    ChangeStatus.submitted,
    ChangeStatus.awaiting_approval,
    ChangeStatus.approved,
    ChangeStatus.scheduled,
)
FINAL = (
    ChangeStatus.successful,
    ChangeStatus.rolled_back,
    ChangeStatus.rollback_failed,
    ChangeStatus.backup_failed,
    ChangeStatus.rejected,
    ChangeStatus.refused,
    ChangeStatus.expired,
    ChangeStatus.cancelled,
    ChangeStatus.customer_rejected,
)


class Change(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=300)
    description: str = ""
    category: str = Field(default="normal", max_length=16)
    ci_names: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    # executors.ChangePlan as JSON: backup, steps with their undo, verification.
    plan: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    planned_start: datetime | None = Field(default=None, sa_type=UTCDateTime)
    planned_end: datetime | None = Field(default=None, sa_type=UTCDateTime)
    requester: str = Field(default="api", max_length=200)
    requester_email: str | None = None
    # Every edit bumps the version; approval links are bound to one version.
    version: int = 1
    status: ChangeStatus = Field(default=ChangeStatus.submitted, index=True)
    risk_score: float | None = None
    risk_level: str | None = None
    risk_reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    flow_run_id: str | None = None
    incident_id: int | None = Field(default=None, foreign_key="incident.id")
    review: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)

    @property
    def number(self) -> str:
        return change_number(self.id)


def change_number(change_id: int | None) -> str:
    return f"CHG-{change_id:06d}" if change_id is not None else "CHG-?"


def parse_change_ref(ref: str | int) -> int:
    text = str(ref).strip().upper().removeprefix("CHG-")
    # ASCII digits only, and few enough to be a row id (SQLite's integers are 64-bit).
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ValueError(f"not a change number: {ref!r} (expected e.g. CHG-000042 or 42)")
    return int(text)


class ChangeEntry(TimelineFields, table=True):
    """The change's timeline: who did what and when. Rows are only ever added."""

    id: int | None = Field(default=None, primary_key=True)
    change_id: int = Field(foreign_key="change.id", index=True)


append_only(ChangeEntry, "change")


class ApprovalRequest(SQLModel, table=True):
    """One approver asked about one version of a change; the emailed link names this row."""

    __table_args__ = (UniqueConstraint("nonce"),)

    id: int | None = Field(default=None, primary_key=True)
    change_id: int = Field(foreign_key="change.id", index=True)
    version: int
    stage: str
    approver: str
    # Random, single use: the link carries it and the decision consumes it.
    nonce: str = Field(max_length=64)
    sent_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    decision: str | None = None  # approve | reject
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_via: str | None = None  # link | prefect-ui | api
    comment: str = ""
    voided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reminded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    escalated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Set when the link was asked for more codes than the policy's cap: it decides nothing more.
    locked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ApprovalCode(SQLModel, table=True):
    """A one-time code mailed to the approver of a link before the link may decide.

    The link alone proves only that someone holds the mail (it may have been forwarded); the code
    goes to the approver's own address. Its own table because `create_all` adds missing tables but
    never columns. Only a keyed hash of the code is stored.
    """

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="approvalrequest.id", index=True)
    # The code decides this way only: a code asked for "approve" cannot reject.
    decision: str = Field(max_length=16)
    code_hash: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    attempts: int = 0  # wrong codes entered; at the policy's limit the code is void
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    voided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


def add_change_entry(
    *,
    session: Session,
    change_id: int,
    kind: str,
    actor: str,
    message: str = "",
    data: dict[str, Any] | None = None,
) -> ChangeEntry:
    entry = ChangeEntry(
        change_id=change_id, kind=kind, actor=actor, message=message, data=data or {}
    )
    session.add(entry)
    return entry


def get_change_timeline(*, session: Session, change_id: int) -> list[ChangeEntry]:
    return list(
        session.exec(
            select(ChangeEntry)
            .where(ChangeEntry.change_id == change_id)
            .order_by(col(ChangeEntry.at), col(ChangeEntry.id))
        )
    )


def list_approval_requests(
    *, session: Session, change_id: int, version: int | None = None
) -> list[ApprovalRequest]:
    statement = select(ApprovalRequest).where(ApprovalRequest.change_id == change_id)
    if version is not None:
        statement = statement.where(ApprovalRequest.version == version)
    return list(session.exec(statement.order_by(col(ApprovalRequest.id))))
