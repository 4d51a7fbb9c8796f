"""A trigger's or a notification's subject, whichever process it belongs to: its number and its
timeline. The delivery pipeline and the runner write and read incidents', changes' and problems'
timelines alike through these functions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlmodel import Session, col, select

from itilflow.models.change import ChangeEntry, change_number
from itilflow.models.incident import TimelineEntry, incident_number
from itilflow.models.proactive import ProactiveEntry, proactive_number
from itilflow.models.problem import ProblemEntry, problem_number
from itilflow.models.trigger import Subject

_ENTRIES = {
    "incident": (TimelineEntry, TimelineEntry.incident_id),
    "change": (ChangeEntry, ChangeEntry.change_id),
    "problem": (ProblemEntry, ProblemEntry.problem_id),
    "proactive": (ProactiveEntry, ProactiveEntry.proactive_id),
}

_NUMBERS = {
    "incident": incident_number,
    "change": change_number,
    "problem": problem_number,
    "proactive": proactive_number,
}


def number_of(subject: Subject) -> str:
    """INC-000041, CHG-000003, PRB-000002, PRO-000007."""
    return _NUMBERS[subject.kind](subject.id)


def add_subject_entry(*, session: Session, subject: Subject, **fields: Any) -> None:
    """Add a row to the subject's timeline; `fields` are the timeline's (kind, actor, message,
    data), as add_timeline, add_change_entry and add_problem_entry take them."""
    entry, _ = _ENTRIES[subject.kind]
    session.add(entry(**{subject.column: subject.id, "data": {}, **fields}))


def notified_keys(
    *, session: Session, subjects: Iterable[Subject]
) -> set[tuple[Subject, str, str]]:
    """(subject, key, channel) of every notification already on these subjects' timelines."""
    found: set[tuple[Subject, str, str]] = set()
    by_kind: dict[str, set[int]] = {}
    for subject in subjects:
        by_kind.setdefault(subject.kind, set()).add(subject.id)
    for kind, ids in by_kind.items():
        entry, subject_id = _ENTRIES[kind]
        rows = session.exec(
            select(subject_id, entry.data).where(
                col(subject_id).in_(sorted(ids)), entry.kind == "notified"
            )
        )
        found |= {(Subject(kind, id_), data.get("key"), data.get("channel")) for id_, data in rows}
    return found
