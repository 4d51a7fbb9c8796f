"""Survey callbacks: one row per level of the callback an unsatisfied survey started.

Level 1 is written with the answer; each later level when the one before ended without
satisfying (not satisfied, unreachable, or its deadline lapsed with nothing recorded). A row's
outcome is written once (a conditional update: two people recording together cannot both win),
so the rows of an incident are the callback's whole record, beside its timeline entries.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, Session, SQLModel, col, select

from itilflow import clock
from itilflow.models.db import UTCDateTime


class SurveyCallback(SQLModel, table=True):
    __tablename__ = "surveycallback"
    __table_args__ = (UniqueConstraint("incident_id", "level"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    level: int
    # What the policy's level said (engineer, group_lead, manager, expert) and whom it named.
    who: str = Field(max_length=20)
    assignee: str | None = Field(default=None, max_length=64)
    started_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime, index=True)
    due_at: datetime = Field(sa_type=UTCDateTime)
    # satisfied | not_satisfied | unreachable; None while open, or when the deadline lapsed.
    outcome: str | None = Field(default=None, max_length=20)
    note: str = ""
    recorded_by: str | None = Field(default=None, max_length=200)
    recorded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    lapsed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    @property
    def is_open(self) -> bool:
        return self.outcome is None and self.lapsed_at is None

    @property
    def late(self) -> bool:
        """Its deadline passed before an outcome was recorded (or it lapsed)."""
        if self.lapsed_at is not None:
            return True
        return self.recorded_at is not None and self.recorded_at > self.due_at


def list_callbacks(*, session: Session, incident_id: int) -> list[SurveyCallback]:
    statement = (
        select(SurveyCallback)
        .where(SurveyCallback.incident_id == incident_id)
        .order_by(col(SurveyCallback.level))
    )
    return list(session.exec(statement))


def get_callback(*, session: Session, incident_id: int, level: int) -> SurveyCallback | None:
    return session.exec(
        select(SurveyCallback).where(
            SurveyCallback.incident_id == incident_id, SurveyCallback.level == level
        )
    ).first()
