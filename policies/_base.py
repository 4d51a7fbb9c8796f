"""What every policy model shares: strict keys, immutability, and keyed cross-field problems."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from itilflow.clock import time_zone_name

PRIORITIES: tuple[str, ...] = ("P1", "P2", "P3", "P4")
Priority = Literal["P1", "P2", "P3", "P4"]

# A short name a process owner types: a level, a group, a category, a skill.
Name = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]


class PolicyModel(BaseModel):
    # extra="forbid": a misspelt key in a YAML file must fail loudly, not be ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Problems(ValueError):
    """Several problems found by a model validator, each at a path below the model.

    A plain ValueError would pin every problem to the model itself; the loader unpacks these so
    each message names its own key (e.g. `matrix.medium.low`).
    """

    def __init__(self, problems: Sequence[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = list(problems)
        super().__init__(
            "; ".join(f"{format_path(path)}: {message}" for path, message in self.problems)
        )


def format_path(path: Sequence[str | int]) -> str:
    """`("chains", "P1", "steps", 2, "after")` -> `chains.P1.steps[2].after`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def plain_list(values: Sequence[object]) -> str:
    return ", ".join(str(value) for value in values)


def raise_if(problems: Sequence[tuple[tuple[str | int, ...], str]]) -> None:
    if problems:
        raise Problems(problems)


def _cron_line(value: str) -> str:
    from datetime import datetime

    from cronsim import CronSim, CronSimError

    text = " ".join(value.split())
    if len(text.split()) != 5:
        raise ValueError(
            "expected a cron line of five fields like '0 8 1 * *' "
            f"(minute hour day month weekday), got {value!r}"
        )
    try:
        CronSim(text, datetime(2026, 1, 1))  # noqa: DTZ001 (validation only)
    except CronSimError as error:
        raise ValueError(f"expected a valid cron line like '0 8 1 * *': {error}") from None
    return text


# A schedule as process owners write it (read in the policy's time zone).
CronLine = Annotated[str, AfterValidator(_cron_line)]
TimeZoneName = Annotated[str, AfterValidator(time_zone_name)]
