"""Problems (the cause behind repeated incidents), their linked incidents, their append-only
timeline, and the knowledge articles written from known errors."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, text
from sqlmodel import Field, Session, SQLModel, col, select

from itilflow import clock
from itilflow.models.db import UTCDateTime
from itilflow.models.timeline import TimelineFields, append_only


class ProblemStatus(StrEnum):
    open = "open"
    investigating = "investigating"
    known_error = "known_error"
    fix_in_progress = "fix_in_progress"
    # The fix is in; the problem waits out the quiet period before it closes.
    resolved = "resolved"
    closed = "closed"


NOT_CLOSED = (
    ProblemStatus.open,
    ProblemStatus.investigating,
    ProblemStatus.known_error,
    ProblemStatus.fix_in_progress,
    ProblemStatus.resolved,
)


class Problem(SQLModel, table=True):
    # One problem per match key while it is not closed; the database refuses a second one.
    __table_args__ = (
        Index(
            "ux_problem_open_match",
            "match_kind",
            "match_value",
            unique=True,
            sqlite_where=text("status != 'closed'"),
            postgresql_where=text("status != 'closed'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=300)
    description: str = ""
    status: ProblemStatus = Field(default=ProblemStatus.open, index=True)
    # What the repeated incidents share: ci | category | fingerprint, and its value.
    match_kind: str = Field(max_length=16)
    match_value: str = Field(max_length=300)
    # The category most of its incidents have (chooses the owner; matches known errors).
    category: str | None = Field(default=None, max_length=64)
    owner: str | None = Field(default=None, max_length=64)  # an engineer's username
    owner_group: str | None = Field(default=None, max_length=64)
    # Root-cause analysis: [{"why": ..., "answer": ...}, ...], the cause, and its category.
    whys: list[dict[str, str]] = Field(default_factory=list, sa_column=Column(JSON))
    root_cause: str = ""
    root_cause_category: str | None = Field(default=None, max_length=32)
    workaround: str = ""
    known_error: bool = False
    fix_change_id: int | None = Field(default=None, foreign_key="change.id")
    last_incident_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    @property
    def number(self) -> str:
        return problem_number(self.id)

    @property
    def match(self) -> str:
        return f"{self.match_kind}={self.match_value}"


def problem_number(problem_id: int | None) -> str:
    return f"PRB-{problem_id:06d}" if problem_id is not None else "PRB-?"


def parse_problem_ref(ref: str | int) -> int:
    """Accept 42, '42' or 'PRB-000042'."""
    value = str(ref).strip().upper().removeprefix("PRB-")
    # ASCII digits only, and few enough to be a row id (SQLite's integers are 64-bit).
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise ValueError(f"not a problem number: {ref!r} (expected e.g. PRB-000042 or 42)")
    return int(value)


class ProblemIncident(SQLModel, table=True):
    """An incident that is one of a problem's occurrences."""

    __table_args__ = (UniqueConstraint("problem_id", "incident_id"),)

    id: int | None = Field(default=None, primary_key=True)
    problem_id: int = Field(foreign_key="problem.id", index=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    linked_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)


class ProblemEntry(TimelineFields, table=True):
    """The problem's timeline: who did what and when. Rows are only ever added."""

    id: int | None = Field(default=None, primary_key=True)
    problem_id: int = Field(foreign_key="problem.id", index=True)


append_only(ProblemEntry, "problem")


class KnowledgeArticle(SQLModel, table=True):
    """A known error written up for the service desk: what it looks like and what helps."""

    __table_args__ = (UniqueConstraint("problem_id"),)

    id: int | None = Field(default=None, primary_key=True)
    problem_id: int = Field(foreign_key="problem.id")
    title: str = Field(max_length=300)
    symptoms: str = ""
    workaround: str = ""
    root_cause: str = ""
    # Lower-case words separated by single spaces, searched with LIKE.
    keywords: str = ""
    # What a new incident is matched on (copied from the problem and its incidents).
    ci_name: str | None = Field(default=None, max_length=200, index=True)
    category: str | None = Field(default=None, max_length=64)
    fingerprint: str | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)

    @property
    def number(self) -> str:
        return article_number(self.id)

    @property
    def keyword_list(self) -> list[str]:
        return self.keywords.split()


def article_number(article_id: int | None) -> str:
    return f"KB-{article_id:06d}" if article_id is not None else "KB-?"


def parse_article_ref(ref: str | int) -> int:
    value = str(ref).strip().upper().removeprefix("KB-")
    # ASCII digits only, and few enough to be a row id (SQLite's integers are 64-bit).
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise ValueError(f"not a knowledge article number: {ref!r} (expected e.g. KB-000042)")
    return int(value)


def add_problem_entry(
    *,
    session: Session,
    problem_id: int,
    kind: str,
    actor: str,
    message: str = "",
    data: dict[str, Any] | None = None,
) -> ProblemEntry:
    entry = ProblemEntry(
        problem_id=problem_id, kind=kind, actor=actor, message=message, data=data or {}
    )
    session.add(entry)
    return entry


def get_problem_timeline(*, session: Session, problem_id: int) -> list[ProblemEntry]:
    return list(
        session.exec(
            select(ProblemEntry)
            .where(ProblemEntry.problem_id == problem_id)
            .order_by(col(ProblemEntry.at), col(ProblemEntry.id))
        )
    )


def get_problem(*, session: Session, problem_id: int) -> Problem | None:
    return session.get(Problem, problem_id)


def get_open_problem(*, session: Session, match_kind: str, match_value: str) -> Problem | None:
    """The problem for this match key that is not closed, if any (at most one exists)."""
    return session.exec(
        select(Problem).where(
            Problem.match_kind == match_kind,
            Problem.match_value == match_value,
            Problem.status != ProblemStatus.closed,
        )
    ).first()


def list_problems(
    *, session: Session, status: str | None = None, limit: int = 100, offset: int = 0
) -> list[Problem]:
    statement = select(Problem).order_by(col(Problem.id).desc()).offset(offset).limit(limit)
    if status:
        statement = statement.where(Problem.status == status)
    return list(session.exec(statement))


def linked_incident_ids(*, session: Session, problem_id: int) -> list[int]:
    return list(
        session.exec(
            select(ProblemIncident.incident_id)
            .where(ProblemIncident.problem_id == problem_id)
            .order_by(col(ProblemIncident.incident_id))
        )
    )


def get_article_of(*, session: Session, problem_id: int) -> KnowledgeArticle | None:
    return session.exec(
        select(KnowledgeArticle).where(KnowledgeArticle.problem_id == problem_id)
    ).first()
