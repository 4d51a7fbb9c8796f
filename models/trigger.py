"""Durable triggers: work the runner must start as a flow run, now or at a deadline.

One row stands for one flow run to start: an incident to open (due at once), an SLA timer or an
escalation step (due at its deadline), a notification of any process kept for another delivery.
The gateway writes them in the same transaction as the incident, so an accepted request is never
lost even while the engine is down; the runner claims due rows with a lease and marks them done
only after the flow run completed.

A trigger's subject is the record it is about: an incident, a change or a problem, each through
its own nullable foreign key (exactly one is set, a check says so). Three columns rather than a
kind and an id: the database keeps the references, and the incidents' rows, which are most of
them, stayed as they were when the other processes came.

Due triggers are served by priority: a trigger carries the rank of its incident's priority (1 for
P1 ... 4 for P4, 5 for work without one), and claims take the most urgent rank first, each rank by
due time. A share of every claim goes to the work due longest, whatever its rank, so that a
stream of urgent work never starves a flood of low-priority work (docs/scaling.md).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    UniqueConstraint,
    case,
    func,
    or_,
    text,
    update,
)
from sqlmodel import Field, Session, SQLModel, col, select

from itilflow import clock
from itilflow.models.db import UTCDateTime

SUBJECTS = ("incident", "change", "problem", "proactive")
ONE_SUBJECT = (
    " + ".join(f"(CASE WHEN {kind}_id IS NULL THEN 0 ELSE 1 END)" for kind in SUBJECTS) + " = 1"
)


# A trigger's priority rank: its incident's priority's number, NO_PRIORITY for everything else.
RANKS = (1, 2, 3, 4, 5)
NO_PRIORITY = 5
# Of every claim, this fraction (at least one row) goes to the triggers due longest, whatever
# their rank: urgent work arriving faster than the runner serves it cannot stop a flood draining.
OLDEST_SHARE = 0.25
PENDING = "done_at IS NULL AND cancelled_at IS NULL"


def rank_of(priority: str | None) -> int:
    """A priority's rank: P1 -> 1 ... P4 -> 4; none (or an unknown one) -> NO_PRIORITY."""
    if priority and priority[:1] == "P" and priority[1:].isdigit():
        return min(max(int(priority[1:]), RANKS[0]), NO_PRIORITY)
    return NO_PRIORITY


def priority_of_rank(rank: int) -> str | None:
    """The priority a rank stands for (1 -> P1); None for NO_PRIORITY (none, or unknown)."""
    return f"P{rank}" if rank < NO_PRIORITY else None


class Subject(NamedTuple):
    """The record a trigger (or a notification) is about: ("change", 3) is CHG-000003."""

    kind: str  # one of SUBJECTS
    id: int

    @property
    def column(self) -> str:
        return f"{self.kind}_id"


def _subject_column(kind: str) -> Column[Any]:
    # Named as PostgreSQL names them: migration 0003 had to name them to add them.
    foreign_key = ForeignKey(f"{kind}.id", name=f"flowtrigger_{kind}_id_fkey")
    return Column(f"{kind}_id", Integer, foreign_key, nullable=True, index=True)


class FlowTrigger(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("incident_id", "key"),
        UniqueConstraint("change_id", "key", name="flowtrigger_change_id_key_key"),
        UniqueConstraint("problem_id", "key", name="flowtrigger_problem_id_key_key"),
        UniqueConstraint("proactive_id", "key", name="flowtrigger_proactive_id_key_key"),
        CheckConstraint(ONE_SUBJECT, name="flowtrigger_one_subject"),
        # Serves the claim's "this rank, due by now, earliest first" over pending rows only: done
        # rows, most of the table, are not in it.
        Index(
            "ix_flowtrigger_pending_rank_due",
            "priority_rank",
            "due_at",
            sqlite_where=text(PENDING),
            postgresql_where=text(PENDING),
        ),
        # Serves the claim's oldest share and next_due_at ("due by now, earliest first" over
        # pending rows): without it SQLite walked every pending trigger, future SLA timers
        # included (94 ms of CPU an idle poll with 50,000 incidents open; bench/processing.py).
        Index(
            "ix_flowtrigger_pending_due",
            "due_at",
            "id",
            sqlite_where=text(PENDING),
            postgresql_where=text(PENDING),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    change_id: int | None = Field(default=None, sa_column=_subject_column("change"))
    problem_id: int | None = Field(default=None, sa_column=_subject_column("problem"))
    proactive_id: int | None = Field(default=None, sa_column=_subject_column("proactive"))
    kind: str = Field(max_length=40)
    # Unique per subject: "open", "escalation:1:0", "response_due", "notify:opened", ...
    key: str = Field(max_length=80)
    due_at: datetime = Field(sa_type=UTCDateTime, index=True)
    priority_rank: int = Field(
        default=NO_PRIORITY, sa_column_kwargs={"server_default": text(str(NO_PRIORITY))}
    )
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    claimed_by: str | None = Field(default=None, max_length=200)
    attempts: int = 0
    last_error: str | None = None
    # Not indexed on its own: "pending" is the partial indexes' WHERE; an index on done_at led
    # SQLite's planner to sort every pending trigger for the oldest due (migration 0009).
    done_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    flow_run_id: str | None = None

    @property
    def pending(self) -> bool:
        return self.done_at is None and self.cancelled_at is None

    @property
    def subject(self) -> Subject:
        for kind in SUBJECTS:
            subject_id = getattr(self, f"{kind}_id")
            if subject_id is not None:
                return Subject(kind, subject_id)
        raise ValueError(f"trigger {self.id} has no subject")


def add_trigger(
    *,
    session: Session,
    kind: str,
    key: str,
    due_at: datetime,
    data: dict[str, Any] | None = None,
    incident_id: int | None = None,
    subject: Subject | None = None,
    priority: str | None = None,
) -> FlowTrigger:
    """A trigger about an incident (`incident_id`) or any process's record (`subject`), served
    by the rank of `priority` (the incident's)."""
    if (incident_id is None) == (subject is None):
        raise ValueError("a trigger needs one subject: an incident_id or a subject")
    subject = subject or Subject("incident", incident_id or 0)
    trigger = FlowTrigger(
        kind=kind, key=key, due_at=due_at, data=data or {}, priority_rank=rank_of(priority)
    )
    setattr(trigger, subject.column, subject.id)
    session.add(trigger)
    return trigger


def get_trigger(*, session: Session, subject: Subject, key: str) -> FlowTrigger | None:
    column = getattr(FlowTrigger, subject.column)
    return session.exec(
        select(FlowTrigger).where(column == subject.id, FlowTrigger.key == key)
    ).first()


def list_triggers(*, session: Session, incident_id: int) -> list[FlowTrigger]:
    statement = (
        select(FlowTrigger)
        .where(FlowTrigger.incident_id == incident_id)
        .order_by(col(FlowTrigger.due_at), col(FlowTrigger.id))
    )
    return list(session.exec(statement))


def _claimable(now: datetime) -> Any:
    return (
        col(FlowTrigger.done_at).is_(None),
        col(FlowTrigger.cancelled_at).is_(None),
        col(FlowTrigger.due_at) <= now,
        or_(col(FlowTrigger.claimed_until).is_(None), col(FlowTrigger.claimed_until) < now),
    )


def count_claimable(*, session: Session) -> int:
    """Triggers due and not held by a runner or waiting out a back-off."""
    query = select(func.count()).select_from(FlowTrigger).where(*_claimable(clock.now()))
    return session.exec(query).one()


def claim_due_triggers(
    *,
    session: Session,
    limit: int,
    lease: timedelta,
    runner: str,
    only_kinds: list[str] | None = None,
    skip_kinds: list[str] | None = None,
    max_rank: int = NO_PRIORITY,
) -> list[FlowTrigger]:
    """Claim up to `limit` due triggers (of `only_kinds`, or of any kind but `skip_kinds`; of
    rank `max_rank` or more urgent), by priority with a share for the oldest (OLDEST_SHARE);
    each claim is a conditional update, so two runners never take the same row. Returned most
    urgent first."""
    now = clock.now()
    query = select(FlowTrigger.id).where(*_claimable(now))
    if only_kinds is not None:
        query = query.where(col(FlowTrigger.kind).in_(only_kinds))
    if skip_kinds:
        query = query.where(col(FlowTrigger.kind).not_in(skip_kinds))
    if max_rank < NO_PRIORITY:
        query = query.where(col(FlowTrigger.priority_rank) <= max_rank)
    candidates = _candidates(session, query, limit)
    claimed: list[int] = []
    for trigger_id in candidates:
        result = session.execute(
            update(FlowTrigger)
            .where(col(FlowTrigger.id) == trigger_id, *_claimable(now))
            .values(claimed_until=now + lease, claimed_by=runner, attempts=FlowTrigger.attempts + 1)
        )
        if result.rowcount == 1:
            claimed.append(trigger_id)
    session.commit()
    if not claimed:
        return []
    return list(
        session.exec(
            select(FlowTrigger)
            .where(col(FlowTrigger.id).in_(claimed))
            .order_by(col(FlowTrigger.priority_rank), *FIRST_DUE)
        )
    )


# Due first, and of those due together (a bulk intake) the first stored.
FIRST_DUE = (col(FlowTrigger.due_at), col(FlowTrigger.id))


def _candidates(session: Session, query: Any, limit: int) -> list[int]:
    """The oldest share first, then rank by rank, each by due time: one index range a rank
    (ix_flowtrigger_pending_rank_due), where one ORDER BY rank, due_at would walk past every
    pending trigger of the ranks before, due or not."""
    share = int(limit * OLDEST_SHARE)  # none for claims of fewer than four
    picked: list[int] = []
    if share:
        picked += session.exec(query.order_by(*FIRST_DUE).limit(share))
        if len(picked) < share:
            return picked  # that was all that is due: an idle runner's poll is one query
    for rank in RANKS:
        if len(picked) >= limit:
            break
        of_rank = query.where(col(FlowTrigger.priority_rank) == rank)
        if picked:
            of_rank = of_rank.where(col(FlowTrigger.id).not_in(picked))
        picked += session.exec(of_rank.order_by(*FIRST_DUE).limit(limit - len(picked)))
    return picked


def next_due_at(*, session: Session) -> datetime | None:
    """When the earliest pending trigger is due (claimed ones count from their lease's end)."""
    row = session.exec(
        select(FlowTrigger.due_at, FlowTrigger.claimed_until)
        .where(col(FlowTrigger.done_at).is_(None), col(FlowTrigger.cancelled_at).is_(None))
        .order_by(col(FlowTrigger.due_at))
        .limit(1)
    ).first()
    if row is None:
        return None
    due_at, claimed_until = row
    return max(due_at, claimed_until) if claimed_until else due_at


def finish_trigger(*, session: Session, trigger_id: int, flow_run_id: str | None) -> None:
    """Mark a trigger done once its run completed; unless its deadline moved into the future
    while it ran (an incident resumed, a timer re-planned): then it is pending again at the new
    time, its claim released, instead of being marked done and never firing."""
    now = clock.now()
    moved = (col(FlowTrigger.done_at).is_(None)) & (col(FlowTrigger.due_at) > now)
    values: dict[str, Any] = {
        "done_at": case((moved, None), else_=func.coalesce(FlowTrigger.done_at, now)),
        "claimed_until": case((moved, None), else_=FlowTrigger.claimed_until),
        "last_error": None,
    }
    if flow_run_id:
        values["flow_run_id"] = flow_run_id
    session.execute(update(FlowTrigger).where(col(FlowTrigger.id) == trigger_id).values(values))


def release_claims(*, session: Session, runner: str) -> int:
    """A runner starting again takes back what it held when it stopped, without waiting for
    its leases to end."""
    return session.execute(
        update(FlowTrigger)
        .where(col(FlowTrigger.claimed_by) == runner, col(FlowTrigger.done_at).is_(None))
        .values(claimed_until=None)
    ).rowcount


def renew_claims(*, session: Session, trigger_ids: list[int], runner: str, lease: timedelta) -> int:
    """Extend a live runner's leases on the triggers it is still running, so that the leases
    can be short: a runner that died loses its claims to the others within one lease."""
    if not trigger_ids:
        return 0
    return session.execute(
        update(FlowTrigger)
        .where(
            col(FlowTrigger.id).in_(trigger_ids),
            col(FlowTrigger.claimed_by) == runner,
            col(FlowTrigger.done_at).is_(None),
        )
        .values(claimed_until=clock.now() + lease)
    ).rowcount


def release_trigger(*, session: Session, trigger_id: int, error: str, retry_at: datetime) -> None:
    """A failed run: keep the row pending and let it be claimed again at `retry_at`."""
    session.execute(
        update(FlowTrigger)
        .where(col(FlowTrigger.id) == trigger_id)
        .values(claimed_until=retry_at, last_error=error[:2000])
    )


def cancel_triggers(*, session: Session, incident_id: int, keys: list[str] | None = None) -> int:
    """Cancel pending triggers of an incident (all, or those with the given keys)."""
    statement = (
        update(FlowTrigger)
        .where(
            col(FlowTrigger.incident_id) == incident_id,
            col(FlowTrigger.done_at).is_(None),
            col(FlowTrigger.cancelled_at).is_(None),
        )
        .values(cancelled_at=clock.now())
    )
    if keys is not None:
        statement = statement.where(col(FlowTrigger.key).in_(keys))
    return session.execute(statement).rowcount
