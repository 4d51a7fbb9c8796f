"""Revision 0003 (a trigger's subject is any process's record) on the c2ee023 installation: its
incidents' triggers keep their incident and are claimed as before, changes and problems get
triggers of their own, and a trigger with no subject or two is refused by the database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from itilflow import clock
from itilflow.models import (
    FlowTrigger,
    Subject,
    add_trigger,
    claim_due_triggers,
    get_engine,
    get_trigger,
    session_scope,
)
from itilflow.models.migrations import upgrade_database
from tests.migrations.support import load_c2ee023


@pytest.fixture
def upgraded(empty_database: Callable[[], str]):
    engine = get_engine(empty_database())
    load_c2ee023(engine.url.render_as_string(hide_password=False))
    upgrade_database(engine)
    return engine


def test_the_incidents_triggers_keep_their_subject_and_are_claimed_as_before(upgraded) -> None:
    with Session(upgraded) as session:
        kept = session.get(FlowTrigger, 2)
        assert kept is not None and kept.pending
        assert kept.subject == Subject("incident", 2)
        assert (kept.change_id, kept.problem_id) == (None, None)
    clock.freeze(kept.due_at + timedelta(minutes=1))
    try:
        with Session(upgraded, expire_on_commit=False) as session:
            claimed = claim_due_triggers(
                session=session, limit=10, lease=timedelta(seconds=20), runner="test"
            )
    finally:
        clock.reset()
    assert [(t.id, t.subject) for t in claimed] == [(2, Subject("incident", 2))]


def test_changes_and_problems_have_triggers_of_their_own(upgraded) -> None:
    due = clock.now()
    with session_scope(upgraded) as session:
        for subject in (Subject("change", 1), Subject("problem", 1)):
            # The same key as an incident's trigger: keys are unique per subject.
            add_trigger(session=session, subject=subject, kind="notify", key="open", due_at=due)
    with Session(upgraded) as session:
        change = get_trigger(session=session, subject=Subject("change", 1), key="open")
        problem = get_trigger(session=session, subject=Subject("problem", 1), key="open")
        incident = get_trigger(session=session, subject=Subject("incident", 1), key="open")
        assert change is not None and change.subject == Subject("change", 1)
        assert problem is not None and problem.subject == Subject("problem", 1)
        assert incident is not None and incident.id == 1
        assert change.incident_id is None and problem.incident_id is None


@pytest.mark.parametrize("subjects", ["NULL, NULL, NULL", "1, 1, NULL", "1, NULL, 1", "NULL, 1, 1"])
def test_a_trigger_with_no_subject_or_two_is_refused(upgraded, subjects: str) -> None:
    with pytest.raises(IntegrityError), upgraded.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO flowtrigger (incident_id, change_id, problem_id, kind, key, due_at,"
                " created_at, attempts) VALUES"
                f" ({subjects}, 'notify', 'x', '2026-12-01 00:00:00', '2026-12-01 00:00:00', 0)"
            )
        )
