"""What refuses a directory batch: the problems found, the error that lists them, and the checks
of one record on its own (its Create schema) and against the others (services/directory.py
gathers them for the whole batch before anything is written).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Problem:
    where: str  # "people.csv line 4", or "" for an API request
    column: str | None
    message: str

    def __str__(self) -> str:
        column = f"column {self.column}" if self.column else ""
        place = ", ".join(part for part in (self.where, column) if part)
        return f"{place}: {self.message}" if place else self.message


class DirectoryError(ValueError):
    """A batch refused: nothing of it was written."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        shown = [str(problem) for problem in self.problems[:MAX_PROBLEMS]]
        more = len(self.problems) - len(shown)
        if more:
            shown.append(f"... and {more} more problem(s)")
        super().__init__("\n".join(shown))

    def __reduce__(self) -> tuple[type[DirectoryError], tuple[list[Problem]]]:
        # A task's exception travels pickled to its flow: keep the problems, not only the text.
        return (DirectoryError, (self.problems,))


def schema_problems(
    error: ValidationError, where: str, columns: Mapping[str, str]
) -> list[Problem]:
    """A record's refusal by its Create schema, one problem per field, named by its column."""
    problems = []
    for detail in error.errors():
        loc = [str(part) for part in detail["loc"]]
        name = loc[0] if loc else None
        column = columns.get(name, name) if name else None
        message = detail["msg"].removeprefix("Value error, ")
        if len(loc) > 1:
            message = f"item {int(loc[1]) + 1 if loc[1].isdigit() else loc[1]}: {message}"
        if detail["type"] == "missing":
            message = f"{name} is required"
        problems.append(Problem(where, column, message))
    return problems


def reference_problems(
    rows: Mapping[str, Mapping[str, Any]],
    kind: str,
    row: Any,
    where: str,
    columns: Mapping[str, str],
) -> list[Problem]:
    """A record against the others (`rows`: kind -> key -> row), as they will be after the
    batch."""
    problems: list[Problem] = []

    def column(name: str) -> str:
        return columns.get(name, name)

    def group_problem(name: str, *, active: bool) -> str | None:
        group = rows["groups"].get(name)
        if group is None:
            known = ", ".join(sorted(rows["groups"])[:10]) or "none yet"
            return f"unknown group {name!r} (known: {known})"
        if active and not group.active:
            return f"group {name!r} is deactivated"
        return None

    if kind == "people":
        # A deactivated engineer may stay in a deactivated group, but the group must exist:
        # the membership row refers to it (a foreign key, else a 500 from the database).
        for name in row.memberships():
            if (message := group_problem(name, active=row.active)) is not None:
                problems.append(Problem(where, column("groups"), message))
    if kind == "cis":
        owner = row.owner_group
        if row.active and owner and (message := group_problem(owner, active=True)):
            problems.append(Problem(where, column("owner_group"), message))
        for name in row.depends_on or []:
            if name == row.name:
                problems.append(
                    Problem(where, column("depends_on"), f"{name!r} cannot depend on itself")
                )
            elif name not in rows["cis"]:
                problems.append(
                    Problem(where, column("depends_on"), f"depends on unknown CI {name!r}")
                )
    if not row.active:
        problems += _deactivation_problems(rows, kind, row, where, column("active"))
    return problems


def _deactivation_problems(
    rows: Mapping[str, Mapping[str, Any]], kind: str, row: Any, where: str, column: str
) -> list[Problem]:
    def named(rows: Iterable[str]) -> str:
        names = sorted(rows)
        return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")

    if kind == "groups":
        members = [
            e.username for e in rows["people"].values() if e.active and row.name in e.memberships()
        ]
        owned = [c.name for c in rows["cis"].values() if c.active and c.owner_group == row.name]
        problems = []
        if members:
            problems.append(
                Problem(
                    where,
                    column,
                    f"group {row.name!r} still has active members ({named(members)}): move or "
                    "deactivate them first",
                )
            )
        if owned:
            problems.append(
                Problem(
                    where,
                    column,
                    f"group {row.name!r} still owns active CIs ({named(owned)}): give them "
                    "another owner or deactivate them first",
                )
            )
        return problems
    if kind == "cis":
        dependents = [
            c.name for c in rows["cis"].values() if c.active and row.name in (c.depends_on or [])
        ]
        if dependents:
            return [
                Problem(
                    where,
                    column,
                    f"active CIs depend on {row.name!r} ({named(dependents)}): change or "
                    "deactivate them first",
                )
            ]
    return []
