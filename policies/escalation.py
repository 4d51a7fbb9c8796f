"""Escalation chains (escalation.yaml), frozen per incident as a snapshot, and their schedule.

The snapshot is stored on the incident when it opens, so a later edit of escalation.yaml does not
change an escalation already under way.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from itilflow.policies._base import PRIORITIES, PolicyModel, plain_list, raise_if
from itilflow.policies.calendars import Calendar
from itilflow.policies.durations import Duration, format_duration

Notify = Literal["assignee", "group_lead", "manager", "group", "on_call"]
StopWhen = Literal["acknowledged", "resolved"]
ChainName = Literal["P1", "P2", "P3", "P4", "default"]


class EscalationStep(PolicyModel):
    # Measured from the moment the incident was opened, not from the previous step.
    after: Duration
    notify: Notify
    repeat: int = Field(0, ge=0)
    repeat_every: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> EscalationStep:
        if self.repeat > 0 and not self.repeat_every:
            raise_if([(("repeat_every",), "required (a positive duration) when repeat is above 0")])
        if self.repeat == 0 and self.repeat_every is not None:
            raise_if([(("repeat",), "repeat_every is set but repeat is 0; set how many repeats")])
        return self


class EscalationChain(PolicyModel):
    stop_when: StopWhen = "acknowledged"
    steps: list[EscalationStep] = []

    @model_validator(mode="after")
    def _check(self) -> EscalationChain:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for index in range(1, len(self.steps)):
            before, step = self.steps[index - 1], self.steps[index]
            # Equal is allowed: two parties may be told at the same moment.
            if step.after < before.after:
                problems.append(
                    (
                        ("steps", index, "after"),
                        "steps must be in increasing order of 'after': "
                        f"{format_duration(step.after)} comes after "
                        f"{format_duration(before.after)}",
                    )
                )
        raise_if(problems)
        return self


class EscalationPolicy(PolicyModel):
    chains: dict[ChainName, EscalationChain]

    @model_validator(mode="after")
    def _check(self) -> EscalationPolicy:
        if "default" not in self.chains:
            raise_if([(("chains", "default"), "missing; the default chain is required")])
        return self


class EscalationSnapshot(BaseModel):
    """A frozen, JSON-able copy of the chain an incident follows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    priority: str
    # Which chain was copied: the priority's own, or "default".
    chain: str
    stop_when: StopWhen
    steps: tuple[EscalationStep, ...]


class PlannedEscalation(BaseModel):
    model_config = ConfigDict(frozen=True)

    step: int  # index into snapshot.steps, from 0
    repeat: int  # 0 for the first notification of a step, 1.. for its repeats
    due_at: AwareDatetime
    notify: Notify


def snapshot_escalation(policy: EscalationPolicy, priority: str) -> EscalationSnapshot:
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}; expected one of {plain_list(PRIORITIES)}")
    name = priority if priority in policy.chains else "default"
    chain = policy.chains[name]  # type: ignore[index]
    return EscalationSnapshot(
        priority=priority, chain=name, stop_when=chain.stop_when, steps=tuple(chain.steps)
    )


def escalation_schedule(
    snapshot: EscalationSnapshot, opened_at: datetime, calendar: Calendar | None = None
) -> list[PlannedEscalation]:
    """Every notification the chain plans, repeats expanded, sorted by due time.

    Offsets are wall-clock time unless a `calendar` is given, in which case they count only its
    open hours (so a P4 chain need not page a manager on Sunday).
    """
    if opened_at.tzinfo is None:
        raise ValueError("opened_at must be a timezone-aware datetime")
    opened_at = opened_at.astimezone(UTC)
    planned = []
    for index, step in enumerate(snapshot.steps):
        every = step.repeat_every or timedelta()
        for repeat in range(step.repeat + 1):
            offset = step.after + every * repeat
            due = calendar.add_business_time(opened_at, offset) if calendar else opened_at + offset
            planned.append(
                PlannedEscalation(step=index, repeat=repeat, due_at=due, notify=step.notify)
            )
    return sorted(planned, key=lambda p: (p.due_at, p.step, p.repeat))
