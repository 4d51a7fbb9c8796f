"""What every timeline row has (incidents, changes, problems), and the rule that rows are only
ever added."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, event
from sqlmodel import Field, SQLModel

from itilflow import clock
from itilflow.models.db import UTCDateTime


class TimelineFields(SQLModel):
    at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    actor: str = Field(max_length=200)
    kind: str = Field(max_length=40, index=True)
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


def append_only(model: type[SQLModel], what: str) -> None:
    """Refuse any update or delete of `model`'s rows through the ORM."""

    def refuse(*_: Any) -> None:
        raise RuntimeError(f"the {what} timeline is append-only")

    event.listen(model, "before_update", refuse)
    event.listen(model, "before_delete", refuse)
