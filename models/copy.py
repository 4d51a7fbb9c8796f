"""Copy an installation's rows into another database (`itilflow db copy`: SQLite to PostgreSQL).

The target is made or upgraded to head and must be empty; the rows go table by table, parents
first, in batches, in one transaction on the target; PostgreSQL's id sequences are moved past the
copied ids; each table's count is compared, and any difference keeps nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Connection, Integer, Table, bindparam, func, null, select, text
from sqlalchemy.engine import Engine

# Rows read and written per statement.
COPY_BATCH = 1000


class CopyError(RuntimeError):
    pass


@dataclass
class CopiedTable:
    name: str
    source: int
    target: int


def _count(connection: Connection, table: Table) -> int:
    return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def _json_columns(table: Table) -> list[str]:
    return [column.name for column in table.columns if isinstance(column.type, JSON)]


def _batches(connection: Connection, table: Table) -> Iterator[list[dict[str, Any]]]:
    """The table's rows in key order, a batch at a time, as dicts. A JSON column's SQL NULL
    reads as None like a JSON null does: `_sql_null_<name>` tells them apart."""
    flags = [table.c[name].is_(None).label(f"_sql_null_{name}") for name in _json_columns(table)]
    ordered = select(table, *flags).order_by(*table.primary_key.columns)
    result = connection.execution_options(yield_per=COPY_BATCH).execute(ordered)
    for rows in result.partitions():
        yield [dict(row._mapping) for row in rows]


def _insert(target: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert a batch, keeping each JSON column's SQL NULL a SQL NULL (the JSON type would
    write a JSON null): rows are grouped by which of those columns are SQL NULL."""
    json_columns = _json_columns(table)
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        nulls = tuple(name for name in json_columns if row.pop(f"_sql_null_{name}"))
        for name in nulls:
            del row[name]
        groups.setdefault(nulls, []).append(row)
    for nulls, members in groups.items():
        statement = table.insert().values(dict.fromkeys(nulls, null())) if nulls else table.insert()
        target.execute(statement, members)


def _copy_table(source: Connection, target: Connection, table: Table) -> None:
    # A column pointing into its own table (an incident's parent) is written after all rows,
    # so that no row has to wait for one with a higher key.
    self_refs = [fk.parent.name for fk in table.foreign_keys if fk.column.table is table]
    keys = [column.name for column in table.primary_key.columns]
    later: dict[str, list[dict[str, Any]]] = {name: [] for name in self_refs}
    for rows in _batches(source, table):
        for row in rows:
            for name in self_refs:
                if row[name] is not None:
                    later[name].append({**{f"key_{k}": row[k] for k in keys}, "value": row[name]})
                    row[name] = None
        _insert(target, table, rows)
    for name, pending in later.items():
        if pending:
            statement = (
                table.update()
                .where(*(table.c[k] == bindparam(f"key_{k}") for k in keys))
                .values({name: bindparam("value")})
            )
            target.execute(statement, pending)


def _advance_sequences(target: Connection, tables: Sequence[Table]) -> None:
    """PostgreSQL: each serial id's sequence continues after the copied ids (rows written with
    their ids do not move it)."""
    quote = target.dialect.identifier_preparer.quote
    for table in tables:
        keys = list(table.primary_key.columns)
        if len(keys) != 1 or not isinstance(keys[0].type, Integer):
            continue
        column = keys[0].name
        # pg_get_serial_sequence is NULL for a column without a sequence; setval(NULL) as well.
        target.execute(
            text(
                "SELECT setval(pg_get_serial_sequence(:table, :column), "
                f"coalesce((SELECT max({quote(column)}) FROM {quote(table.name)}), 0) + 1, false)"
            ),
            {"table": quote(table.name), "column": column},
        )


def copy_database(
    source: Engine, target: Engine, *, say: Callable[[str], None] = print
) -> list[CopiedTable]:
    """Copy every row of itilflow's tables from `source` (at head) into `target` (made or
    upgraded to head first, and empty), in one transaction on the target: on any error, or a
    count that differs, nothing is kept."""
    from sqlmodel import SQLModel

    from itilflow import models  # noqa: F401  (registers every table on the metadata)
    from itilflow.models.migrations import check_database, describe, upgrade_database

    if source.url == target.url:
        raise CopyError("the source and the target are the same database")
    check_database(source)
    upgrade_database(target)
    tables = list(SQLModel.metadata.sorted_tables)  # parents before children
    copied: list[CopiedTable] = []
    # The source's transaction (BEGIN IMMEDIATE on SQLite) holds off writers for the copy.
    with source.begin() as reading, target.begin() as writing:
        holding = [table.name for table in tables if _count(writing, table)]
        if holding:
            raise CopyError(
                f"the target {describe(target)} is not empty (rows in {', '.join(holding)}): "
                "give an empty database"
            )
        for table in tables:
            _copy_table(reading, writing, table)
        if writing.dialect.name == "postgresql":
            _advance_sequences(writing, tables)
        for table in tables:
            entry = CopiedTable(table.name, _count(reading, table), _count(writing, table))
            copied.append(entry)
            mark = "" if entry.source == entry.target else f"  MISMATCH: source has {entry.source}"
            say(f"  {table.name:<20} {entry.target:>9} rows{mark}")
        wrong = [entry.name for entry in copied if entry.source != entry.target]
        if wrong:
            raise CopyError(f"row counts differ in {', '.join(wrong)}: nothing was kept")
    return copied
