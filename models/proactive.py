"""Proactive notices: an inspection foresaw trouble on a CI (a disk filling up, a certificate
about to expire) inside the policy's horizon, and the service desk proposes a change before it
happens. One record per occurrence, with its own append-only timeline.

One occurrence per CI and kind is open (`cleared_at` empty) at a time: the database refuses a
second. A re-run updates the open one; a recovery, a decision's end or a lapsed window clears it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, text
from sqlmodel import Field, Session, SQLModel, col, select

from itilflow import clock
from itilflow.models.db import UTCDateTime
from itilflow.models.timeline import TimelineFields, append_only


class ProactiveStatus(StrEnum):
    # Mailed to the owner group and the customer; waiting for the owner group's decision.
    proposed = "proposed"
    # The owner group accepted: a change request was made from the template for the window.
    accepted = "accepted"
    declined = "declined"
    # The prediction's moment came (the disk full, the certificate expired) with no decision.
    expired = "expired"
    # The proposed window passed with no decision: a new proposal with the next window replaced it.
    superseded = "superseded"
    # The check recovered (no longer filling, certificate renewed) before any decision.
    not_needed = "not_needed"


PROACTIVE_KINDS: tuple[str, ...] = ("disk_fill", "certificate_expiry")
OPEN_OCCURRENCE = "cleared_at IS NULL"


class ProactiveNotice(SQLModel, table=True):
    # "proactive": a trigger's subject column is proactive_id (models/trigger.py).
    __tablename__ = "proactive"
    __table_args__ = (
        Index(
            "ux_proactive_open_ci_kind",
            "ci_name",
            "kind",
            unique=True,
            sqlite_where=text(OPEN_OCCURRENCE),
            postgresql_where=text(OPEN_OCCURRENCE),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    ci_name: str = Field(max_length=200, index=True)
    kind: str = Field(max_length=32)  # disk_fill | certificate_expiry
    # What the prediction is about: a mountpoint, or host:port of the certificate.
    item: str = Field(max_length=300)
    # The inspection target and check whose results open, update and clear it.
    target: str = Field(max_length=100)
    check_name: str = Field(max_length=100)
    # When the disk is full / the certificate expires, as last predicted.
    predicted_at: datetime = Field(sa_type=UTCDateTime)
    proposed_start: datetime = Field(sa_type=UTCDateTime)
    proposed_end: datetime = Field(sa_type=UTCDateTime)
    time_zone: str = Field(max_length=64)  # the zone the window is told in
    template: str = Field(max_length=200)
    parameters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    owner_group: str | None = Field(default=None, max_length=64)
    customer_contact: str | None = Field(default=None, max_length=254)
    customer_language: str = Field(default="en", max_length=16)
    # A ProactiveStatus value (plain text: no database enum type to migrate when one is added).
    status: str = Field(default=ProactiveStatus.proposed.value, max_length=16, index=True)
    decided_by: str | None = Field(default=None, max_length=200)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reason: str = ""
    change_id: int | None = Field(default=None, foreign_key="change.id")
    run_id: int | None = Field(default=None, foreign_key="inspectionrun.id")
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime, index=True)
    updated_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    cleared_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    @property
    def number(self) -> str:
        return proactive_number(self.id)


def proactive_number(notice_id: int | None) -> str:
    return f"PRO-{notice_id:06d}" if notice_id is not None else "PRO-?"


def parse_proactive_ref(ref: str | int) -> int:
    """Accept 7, '7' or 'PRO-000007'."""
    value = str(ref).strip().upper().removeprefix("PRO-")
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise ValueError(f"not a proactive notice: {ref!r} (expected e.g. PRO-000007 or 7)")
    return int(value)


class ProactiveEntry(TimelineFields, table=True):
    """The notice's timeline: proposed, updated, mailed, decided, cleared. Only ever added to."""

    id: int | None = Field(default=None, primary_key=True)
    proactive_id: int = Field(foreign_key="proactive.id", index=True)


append_only(ProactiveEntry, "proactive")


def add_proactive_entry(
    *,
    session: Session,
    proactive_id: int,
    kind: str,
    actor: str,
    message: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    session.add(
        ProactiveEntry(
            proactive_id=proactive_id, kind=kind, actor=actor, message=message, data=data or {}
        )
    )


def find_open_notice(*, session: Session, ci_name: str, kind: str) -> ProactiveNotice | None:
    return session.exec(
        select(ProactiveNotice).where(
            ProactiveNotice.ci_name == ci_name,
            ProactiveNotice.kind == kind,
            col(ProactiveNotice.cleared_at).is_(None),
        )
    ).first()


def list_notices(
    *, session: Session, status: str | None = None, ci_name: str | None = None, limit: int = 200
) -> list[ProactiveNotice]:
    """The newest first."""
    statement = select(ProactiveNotice)
    if status:
        statement = statement.where(ProactiveNotice.status == status)
    if ci_name:
        statement = statement.where(ProactiveNotice.ci_name == ci_name)
    statement = statement.order_by(col(ProactiveNotice.id).desc()).limit(limit)
    return list(session.exec(statement))


def get_proactive_timeline(*, session: Session, proactive_id: int) -> list[ProactiveEntry]:
    return list(
        session.exec(
            select(ProactiveEntry)
            .where(ProactiveEntry.proactive_id == proactive_id)
            .order_by(col(ProactiveEntry.id))
        )
    )
