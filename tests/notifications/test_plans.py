"""A plan names its subject; one kept before changes and problems had plans names an incident."""

from __future__ import annotations

from itilflow.models import Subject
from itilflow.notifications.plans import channels_left, subject_of

KEPT_BEFORE = {
    "incident_id": 41,
    "number": "INC-000041",
    "key": "opened",
    "template": "incident_opened",
    "actor": "flow:open-incident",
    "emails": ["oncall@example.com"],
    "tags": ["dba"],
    "message": {},
}


def test_a_plan_kept_before_subjects_names_its_incident() -> None:
    assert subject_of(KEPT_BEFORE) == Subject("incident", 41)
    delivered = {(Subject("incident", 41), "opened", "email")}
    assert channels_left(KEPT_BEFORE, delivered) == ["chat"]  # type: ignore[arg-type]


def test_a_plan_names_its_subject() -> None:
    plan = {**KEPT_BEFORE, "subject": "change", "subject_id": 3, "tags": []}
    assert subject_of(plan) == Subject("change", 3)
    assert channels_left(plan, set()) == ["email"]  # type: ignore[arg-type]
    assert channels_left(plan, {(Subject("incident", 3), "opened", "email")}) == ["email"]  # type: ignore[arg-type]
