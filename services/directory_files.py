"""The directory as files: YAML (one file, sections `groups`, `people`, `cis`) and CSV (one file
per kind, told by its columns or by `kind=`). Read by `itilflow import` and the import-directory
flow, written by `itilflow export`; what is written reads back unchanged.

In CSV, list fields (groups, skills, escalation_contacts, depends_on) hold their items in one
cell separated by `;`, `attributes` is a JSON object, booleans are true/false (yes/no, 1/0). An
empty cell clears an optional field; an empty capacity, on_duty, active or attributes cell keeps
the stored value (a new record gets the default). A column a file does not have is left alone.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import Engine
from sqlmodel import Session

from itilflow.models import session_scope
from itilflow.services.directory import (
    BOOL_FIELDS,
    FIELDS,
    INT_FIELDS,
    KINDS,
    LIST_FIELDS,
    MAPPING_FIELDS,
    Directory,
    Kind,
    Outcome,
    Record,
    current_values,
    save_records,
)
from itilflow.services.directory_checks import DirectoryError, Problem

LIST_SEPARATOR = ";"
# Other names the YAML sections go by (the demo's data.yaml).
SECTION_ALIASES: dict[str, Kind] = {"engineers": "people", "configuration_items": "cis"}
# Columns that tell a CSV file's kind, checked in this order.
KIND_COLUMNS: tuple[tuple[Kind, frozenset[str]], ...] = (
    ("people", frozenset({"username"})),
    ("cis", frozenset({"kind", "criticality", "environment", "depends_on", "owner_group"})),
    ("groups", frozenset({"lead", "manager", "escalation_contacts"})),
)
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}


@dataclass(frozen=True)
class Source:
    """A file to import: its text, the name errors call it by (a path or a URL) and its format
    (`.csv`, `.yaml` or `.yml`)."""

    name: str
    text: str
    suffix: str

    @classmethod
    def from_path(cls, path: Path) -> Source:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise DirectoryError(
                [Problem(str(path), None, f"cannot read the file: {exc}")]
            ) from exc
        return cls(str(path), text, path.suffix.lower())


# -------------------------------------------------------------------------------------- read


def read_records(source: Source, *, kind: Kind | None = None) -> list[Record]:
    """The records of one file; DirectoryError (naming file, line and column) if any is bad."""
    text = source.text.removeprefix("\ufeff")
    if source.suffix in (".yaml", ".yml"):
        return _read_yaml(text, source.name)
    if source.suffix == ".csv":
        return _read_csv(text, source.name, kind)
    raise DirectoryError(
        [Problem(source.name, None, f"expected a .yaml, .yml or .csv file, got {source.suffix!r}")]
    )


def _read_yaml(text: str, name: str) -> list[Record]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader)
        root = yaml.compose(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name} line {mark.line + 1}" if mark else name
        raise DirectoryError([Problem(where, None, f"not valid YAML: {exc}")]) from exc
    if not isinstance(data, dict) or root is None:
        raise DirectoryError(
            [Problem(name, None, "expected a mapping with sections groups, people and cis")]
        )
    lines = {
        key.value: [item.start_mark.line + 1 for item in value.value]
        for key, value in root.value
        if isinstance(value, yaml.SequenceNode)
    }
    records: list[Record] = []
    problems: list[Problem] = []
    for section, items in data.items():
        kind = SECTION_ALIASES.get(section, section)
        if kind not in KINDS:
            problems.append(
                Problem(name, str(section), "unknown section; expected groups, people or cis")
            )
            continue
        if not isinstance(items, list):
            problems.append(Problem(name, str(section), "expected a list of records"))
            continue
        for index, values in enumerate(items):
            where = f"{name} line {lines[section][index]}"
            if not isinstance(values, dict):
                problems.append(Problem(where, None, "expected a mapping of fields"))
                continue
            unknown = [str(key) for key in values if key not in FIELDS[kind]]
            problems += [_unknown_field(where, key, kind) for key in unknown]
            if not unknown:
                records.append(Record(kind, dict(values), where=where))
    if problems:
        raise DirectoryError(problems)
    return records


def _unknown_field(where: str, column: str, kind: Kind) -> Problem:
    expected = ", ".join(FIELDS[kind])
    return Problem(where, column, f"unknown field for {kind}; expected one of {expected}")


def _read_csv(text: str, name: str, kind: Kind | None) -> list[Record]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [column.strip() for column in next(reader)]
    except StopIteration:
        raise DirectoryError([Problem(name, None, "the file is empty")]) from None
    except csv.Error as exc:
        raise DirectoryError([Problem(f"{name} line 1", None, f"not valid CSV: {exc}")]) from exc
    header_at = f"{name} line 1"
    kind = kind or _kind_of(header, name)
    problems = [_unknown_field(header_at, c, kind) for c in header if c not in FIELDS[kind]]
    key = "username" if kind == "people" else "name"
    if key not in header:
        problems.append(Problem(header_at, None, f"a {kind} file needs a {key!r} column"))
    repeated = {c for c in header if header.count(c) > 1}
    problems += [Problem(header_at, c, "the column is given twice") for c in sorted(repeated)]
    if problems:
        raise DirectoryError(problems)
    records = []
    rows = _rows(reader, name)
    for line, cells in rows:
        where = f"{name} line {line}"
        if not any(cell.strip() for cell in cells):
            continue  # a blank line
        if len(cells) != len(header):
            problems.append(
                Problem(where, None, f"{len(cells)} cells, the header has {len(header)} columns")
            )
            continue
        values: dict[str, Any] = {}
        for column, cell in zip(header, cells, strict=True):
            try:
                parsed = _cell(column, cell.strip())
            except ValueError as exc:
                problems.append(Problem(where, column, str(exc)))
                continue
            if parsed is not _KEEP:
                values[column] = parsed
        records.append(Record(kind, values, where=where))
    if problems:
        raise DirectoryError(problems)
    return records


def _rows(reader: Any, name: str) -> Iterator[tuple[int, list[str]]]:
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DirectoryError(
                [Problem(f"{name} line {line}", None, f"not valid CSV: {exc}")]
            ) from exc
        yield line, cells


def _kind_of(header: Sequence[str], name: str) -> Kind:
    for kind, columns in KIND_COLUMNS:
        if columns & set(header):
            return kind
    raise DirectoryError(
        [
            Problem(
                f"{name} line 1",
                None,
                f"cannot tell groups, people or cis from the columns ({', '.join(header)}): "
                "name the kind (itilflow import --kind ...)",
            )
        ]
    )


_KEEP = object()


def _cell(column: str, cell: str) -> Any:
    if column in LIST_FIELDS:
        return [item.strip() for item in cell.split(LIST_SEPARATOR) if item.strip()]
    if column in BOOL_FIELDS:
        if not cell:
            return _KEEP
        if cell.lower() in _TRUE:
            return True
        if cell.lower() in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {cell!r}")
    if column in INT_FIELDS:
        if not cell:
            return _KEEP
        try:
            return int(cell)
        except ValueError:
            raise ValueError(f"expected a whole number, got {cell!r}") from None
    if column in MAPPING_FIELDS:
        if not cell:
            return _KEEP
        try:
            value = json.loads(cell)
        except json.JSONDecodeError as exc:
            raise ValueError(f'expected a JSON object like {{"rack": "A3"}}: {exc}') from None
        if not isinstance(value, dict):
            raise ValueError(f'expected a JSON object like {{"rack": "A3"}}, got {cell!r}')
        return value
    return cell or None


# ------------------------------------------------------------------------------------- import


def import_sources(
    engine: Engine,
    sources: Sequence[Source],
    *,
    kind: Kind | None = None,
    dry_run: bool = False,
    deactivate_missing: bool = False,
) -> Outcome:
    """Read every file, then write them as one batch: all or nothing. A dry run rolls back."""
    records: list[Record] = []
    problems: list[Problem] = []
    for source in sources:
        try:
            records += read_records(source, kind=kind)
        except DirectoryError as error:
            problems += error.problems
    if problems:
        raise DirectoryError(problems)
    with Session(engine, expire_on_commit=False) as session:
        try:
            outcome = save_records(session, records, deactivate_missing=deactivate_missing)
        except BaseException:
            session.rollback()
            raise
        if dry_run or not outcome.changes_anything:
            session.rollback()
        else:
            session.commit()
    return outcome


# ------------------------------------------------------------------------------------- export


def export_rows(engine: Engine) -> dict[Kind, list[dict[str, Any]]]:
    with session_scope(engine) as session:
        directory = Directory(session)
        return {
            kind: [
                {name: current_values(kind, row)[name] for name in FIELDS[kind]}
                for _, row in sorted(directory.rows[kind].items())
            ]
            for kind in KINDS
        }


def to_yaml(rows: dict[Kind, list[dict[str, Any]]], kinds: Sequence[Kind] = KINDS) -> str:
    body = {kind: rows[kind] for kind in kinds}
    return yaml.safe_dump(body, sort_keys=False, allow_unicode=True, default_flow_style=None)


def to_csv(rows: list[dict[str, Any]], kind: Kind) -> str:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS[kind])
    for row in rows:
        writer.writerow([_to_cell(name, row[name]) for name in FIELDS[kind]])
    return out.getvalue()


def _to_cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name in LIST_FIELDS:
        return LIST_SEPARATOR.join(value)
    if name in BOOL_FIELDS:
        return "true" if value else "false"
    if name in MAPPING_FIELDS:
        return json.dumps(value, sort_keys=True, ensure_ascii=False) if value else ""
    return str(value)
