"""The team's directory: groups, engineers (people) and configuration items (CIs).

Every write goes through `save_records`: the API's create/update/deactivate, `itilflow import`
and the `import-directory` flow. A record is checked on its own by its Create schema
(models/people.py) and against the others here: an engineer's groups and a CI's owner group must
exist and be active, a CI depends only on known CIs and never on itself, a group with active
members or CIs and a CI that active CIs depend on stay active. Any problem refuses the whole
batch, each problem naming where it is (file, line, column) so nothing is half-written.

Nothing is ever deleted: incidents, changes and problems refer to these records. A deactivated
engineer is never assigned (tasks/assign_incident.py builds its candidates from active engineers
only) and hears no group notification; their open incidents stay with them until reassigned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from sqlmodel import Session, SQLModel, select

from itilflow.models.people import (
    ConfigurationItem,
    ConfigurationItemCreate,
    Engineer,
    EngineerCreate,
    Group,
    GroupCreate,
)
from itilflow.services.directory_checks import (
    DirectoryError,
    Problem,
    reference_problems,
    schema_problems,
)

Kind = Literal["groups", "people", "cis"]
# The order records are written and checked in: groups before the people and CIs in them.
KINDS: tuple[Kind, ...] = ("groups", "people", "cis")
KEY_OF: dict[Kind, str] = {"groups": "name", "people": "username", "cis": "name"}
SINGULAR: dict[Kind, str] = {"groups": "group", "people": "engineer", "cis": "CI"}
CREATE_SCHEMA: dict[Kind, type[BaseModel]] = {
    "groups": GroupCreate,
    "people": EngineerCreate,
    "cis": ConfigurationItemCreate,
}
TABLE: dict[Kind, type[SQLModel]] = {
    "groups": Group,
    "people": Engineer,
    "cis": ConfigurationItem,
}
# The fields of each kind, in the order files and exports show them.
FIELDS: dict[Kind, tuple[str, ...]] = {
    "groups": ("name", "lead", "manager", "escalation_contacts", "email", "active"),
    "people": (
        "username",
        "name",
        "email",
        "phone",
        "language",
        "time_zone",
        "groups",
        "skills",
        "capacity",
        "on_duty",
        "active",
    ),
    "cis": (
        "name",
        "kind",
        "criticality",
        "owner_group",
        "environment",
        "customer_contact",
        "customer_language",
        "time_zone",
        "depends_on",
        "attributes",
        "active",
    ),
}
LIST_FIELDS = frozenset({"escalation_contacts", "groups", "skills", "depends_on"})
BOOL_FIELDS = frozenset({"active", "on_duty"})
INT_FIELDS = frozenset({"capacity"})
MAPPING_FIELDS = frozenset({"attributes"})


# Problems listed in one error at most; the rest are counted.
class NotFound(LookupError):
    pass


class AlreadyExists(ValueError):
    pass


@dataclass(frozen=True)
class Record:
    """One record to write: the fields given (a file's columns, a request's keys) and where it
    came from, for the errors."""

    kind: Kind
    values: dict[str, Any]
    where: str = ""
    # field -> the column (or key) it came from, when the names differ.
    columns: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return str(self.values.get(KEY_OF[self.kind], ""))


@dataclass
class Outcome:
    """What a batch did (or, dry run, would do), per kind."""

    created: dict[Kind, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    # name -> field -> (old, new)
    changed: dict[Kind, dict[str, dict[str, tuple[Any, Any]]]] = field(
        default_factory=lambda: {k: {} for k in KINDS}
    )
    unchanged: dict[Kind, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    # Records of a kind the batch had but not these: left alone, or deactivated when asked.
    not_given: dict[Kind, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    deactivated: dict[Kind, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    kinds: set[Kind] = field(default_factory=set)

    @property
    def changes_anything(self) -> bool:
        return any(self.created[k] or self.changed[k] or self.deactivated[k] for k in KINDS)


class Directory:
    """Every group, engineer and CI of the database, attached to `session`: the batch's checks
    see the records as they will be once it is written."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.rows: dict[Kind, dict[str, Any]] = {
            kind: {getattr(row, KEY_OF[kind]): row for row in session.exec(select(TABLE[kind]))}
            for kind in KINDS
        }

    def get(self, kind: Kind, key: str) -> Any:
        row = self.rows[kind].get(key)
        if row is None:
            raise NotFound(f"no {SINGULAR[kind]} {key!r}")
        return row


# ---------------------------------------------------------------------------- values of a row


def current_values(kind: Kind, row: Any) -> dict[str, Any]:
    """A stored row in its Create schema's terms (an engineer's `groups` has the primary first)."""
    values = {name: getattr(row, name) for name in FIELDS[kind] if name != "groups"}
    if kind == "people":
        values["groups"] = row.memberships()
    for name in LIST_FIELDS | MAPPING_FIELDS:
        if name in values and values[name] is None:
            values[name] = {} if name in MAPPING_FIELDS else []
    return values


def _write(kind: Kind, row: Any, values: dict[str, Any]) -> None:
    for name, value in values.items():
        if kind == "people" and name == "groups":
            row.group_name = value[0]
        setattr(row, name, list(value) if isinstance(value, list) else value)


def _new_row(kind: Kind, values: dict[str, Any]) -> Any:
    # Every column given to the constructor: a column left out costs a default factory call,
    # which pydantic inspects (signature parsing) on every row: 2,000 CIs took 4 s that way.
    columns = dict(values)
    if kind == "people":
        columns["group_name"] = values["groups"][0]
    return TABLE[kind](**columns)


# ------------------------------------------------------------------------------------- writes


def save_records(
    session: Session,
    records: Sequence[Record],
    *,
    deactivate_missing: bool = False,
    create: bool | None = None,
) -> Outcome:
    """Create or update `records` (only the fields each one gives), checked as one batch.

    `create`: True refuses a record that exists, False one that does not (the API's POST and
    PATCH); None creates or updates (an import). With `deactivate_missing`, the records of a kind
    the batch has that are not in it are deactivated; otherwise they are left alone.
    Raises DirectoryError (nothing written: the caller rolls back) listing every problem.
    The caller commits; a dry run rolls back instead.
    """
    directory = Directory(session)
    outcome = Outcome()
    problems: list[Problem] = []
    seen: dict[tuple[Kind, str], str] = {}
    touched: list[tuple[Kind, Any, Record]] = []
    for record in sorted(records, key=lambda r: KINDS.index(r.kind)):
        kind = record.kind
        outcome.kinds.add(kind)
        key = record.key
        if key and (kind, key) in seen:
            problems.append(
                Problem(
                    record.where,
                    record.columns.get(KEY_OF[kind], KEY_OF[kind]),
                    f"{SINGULAR[kind]} {key!r} is given twice (first {seen[kind, key] or 'above'})",
                )
            )
            continue
        if key:
            seen[kind, key] = record.where
        try:
            row = _stage(directory, outcome, record, create=create)
        except ValidationError as error:
            problems += schema_problems(error, record.where, record.columns)
            continue
        touched.append((kind, row, record))
    touched += _leave_or_deactivate_missing(directory, outcome, seen, deactivate_missing)
    # Checked once everything is in place: a file may name a group after the people in it.
    for kind, row, record in touched:
        problems += reference_problems(directory.rows, kind, row, record.where, record.columns)
    if problems:
        raise DirectoryError(problems)
    # Kind by kind: the unit of work does not know that an engineer's row needs its group's.
    for kind in KINDS:
        session.add_all(directory.rows[kind][key] for key in outcome.created[kind])
        session.flush()
    return outcome


def _stage(directory: Directory, outcome: Outcome, record: Record, *, create: bool | None) -> Any:
    """The record's row as it will be written (new, or the stored one with the record's fields),
    counted in `outcome`. Raises ValidationError when the Create schema refuses the values."""
    kind, key = record.kind, record.key
    row = directory.rows[kind].get(key)
    if create is True and row is not None:
        raise AlreadyExists(f"{SINGULAR[kind]} {key!r} already exists")
    if create is False and row is None:
        raise NotFound(f"no {SINGULAR[kind]} {key!r}")
    before = current_values(kind, row) if row is not None else {}
    after = CREATE_SCHEMA[kind].model_validate(before | record.values).model_dump()
    if row is None:
        row = _new_row(kind, after)
        directory.rows[kind][key] = row
        outcome.created[kind].append(key)
        return row
    changes = {
        name: (before.get(name), after[name])
        for name in FIELDS[kind]
        if before.get(name) != after[name]
    }
    if changes:
        _write(kind, row, {name: new for name, (_, new) in changes.items()})
        outcome.changed[kind][key] = changes
    else:
        outcome.unchanged[kind] += 1
    return row


def _leave_or_deactivate_missing(
    directory: Directory,
    outcome: Outcome,
    seen: dict[tuple[Kind, str], str],
    deactivate: bool,
) -> list[tuple[Kind, Any, Record]]:
    """Count the stored records of the batch's kinds that it does not name and, when asked,
    deactivate them; returns the deactivated ones, to be checked with the rest."""
    touched: list[tuple[Kind, Any, Record]] = []
    for kind in outcome.kinds:
        missing = [row for key, row in directory.rows[kind].items() if (kind, key) not in seen]
        outcome.not_given[kind] = len(missing)
        if deactivate:
            for row in missing:
                if row.active:
                    row.active = False
                    key = getattr(row, KEY_OF[kind])
                    outcome.deactivated[kind].append(key)
                    touched.append((kind, row, Record(kind, {}, where=f"{SINGULAR[kind]} {key!r}")))
    return touched


def save_one(session: Session, kind: Kind, values: dict[str, Any], *, create: bool) -> Any:
    """One record from the API: create (True) or update (False, only the fields given)."""
    save_records(session, [Record(kind, values)], create=create)
    return session.get(TABLE[kind], values[KEY_OF[kind]])


def set_active(session: Session, kind: Kind, key: str, active: bool) -> Any:
    """Deactivate or reactivate one record (the same checks as any other write)."""
    return save_one(session, kind, {KEY_OF[kind]: key, "active": active}, create=False)


def describe(outcome: Outcome, *, dry_run: bool, limit: int | None = None) -> str:
    """The outcome as the CLI and the flow print it: counts, then each change old -> new."""
    verb = "would be" if dry_run else "were"
    lines = []
    for kind in KINDS:
        if kind not in outcome.kinds:
            continue
        created, changed = outcome.created[kind], outcome.changed[kind]
        deactivated = outcome.deactivated[kind]
        summary = (
            f"{kind}: {len(created)} created, {len(changed)} changed, "
            f"{outcome.unchanged[kind]} unchanged"
        )
        if deactivated:
            summary += f", {len(deactivated)} deactivated"
        elif outcome.not_given[kind]:
            summary += (
                f"; {outcome.not_given[kind]} not in the file, left alone "
                "(--deactivate-missing deactivates them)"
            )
        lines.append(summary)
        entries = [f"  + {kind} {key}" for key in created]
        for key, changes in changed.items():
            fields = "; ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in changes.items())
            entries.append(f"  ~ {kind} {key}: {fields}")
        entries += [f"  - {kind} {key}: deactivated" for key in deactivated]
        if limit is not None and len(entries) > limit:
            entries = entries[:limit] + [f"  ... and {len(entries) - limit} more"]
        lines += entries
    if not outcome.changes_anything:
        lines.append("nothing to change: the directory already matches")
    elif dry_run:
        lines.append(f"dry run: nothing {verb} written")
    return "\n".join(lines)
