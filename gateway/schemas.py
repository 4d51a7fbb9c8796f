"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# An alert's outcome is the alert rules' own schema (services/alerts.py, with the payload's).
from itilflow.services.alerts import AlertOutcome

# Far past any real page, and inside every database's integers: a larger offset is a 422, not
# an overflow in the driver.
MAX_OFFSET = 1_000_000_000

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


def _clean_text(value: str | None) -> str | None:
    if value is None:
        return None
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value.strip()


class IncidentIn(BaseModel):
    """A new incident. Text is stored as given and escaped wherever it is shown."""

    model_config = ConfigDict(extra="forbid", str_max_length=20_000)

    title: str = Field(min_length=1, max_length=300, examples=["Payment module returns 500"])
    description: str = Field(default="", max_length=20_000)
    category: str | None = Field(default=None, max_length=64, examples=["software"])
    ci: str | None = Field(default=None, max_length=200, examples=["shop-web-01"])
    impact: str | None = Field(default=None, max_length=32, examples=["high"])
    urgency: str | None = Field(default=None, max_length=32, examples=["high"])
    priority: str | None = Field(
        default=None, description="P1..P4; omit to derive it from impact x urgency"
    )
    reporter_name: str | None = Field(default=None, max_length=200)
    reporter_email: str | None = Field(default=None, max_length=320)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)

    @field_validator("title", "description", "category", "ci", "reporter_name")
    @classmethod
    def _no_control_characters(cls, value: str | None) -> str | None:
        return _clean_text(value)

    @field_validator("title")
    @classmethod
    def _title_not_blank(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("reporter_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError("is not an email address")
        return value


class IncidentRef(BaseModel):
    id: int
    number: str
    url: str
    status: str
    created: bool


class IncidentOut(BaseModel):
    id: int
    number: str
    url: str
    title: str
    description: str
    status: str
    priority: str | None
    category: str | None
    ci: str | None
    impact: str | None
    urgency: str | None
    group: str | None
    assignee: str | None
    source: str
    reporter_email: str | None
    fingerprint: str | None
    parent_id: int | None
    survey_score: int | None
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None


class TimelineOut(BaseModel):
    at: datetime
    actor: str
    kind: str
    message: str
    data: dict[str, Any]


class SlaOut(BaseModel):
    priority: str | None
    response_due: datetime | None
    resolution_due: datetime | None
    time_to_respond_seconds: float | None
    time_to_resolve_seconds: float | None
    time_on_hold_seconds: float
    response_breached: bool
    resolution_breached: bool
    paused: bool
    policy: str


Action = Literal["acknowledge", "comment", "hold", "resume", "resolve", "reopen", "close"]


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=20_000)
    actor: str | None = Field(
        default=None, max_length=200, description="who acts; defaults to the API client"
    )

    @field_validator("note", "actor")
    @classmethod
    def _no_control_characters(cls, value: str | None) -> str | None:
        return _clean_text(value)


class AlertmanagerResult(BaseModel):
    alerts: list[AlertOutcome]
