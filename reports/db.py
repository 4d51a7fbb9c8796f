"""A read-only snapshot of the database for the report's queries, on SQLite or PostgreSQL.

The report reads inside one transaction that it rolls back at the end: every query sees the
same snapshot, and its TEMP work tables (month bounds, business calendars, per-incident facts)
vanish with the rollback.

- SQLite: a deferred transaction on the raw connection, so the main database is never
  write-locked while the report runs (the application's sessions start with BEGIN IMMEDIATE,
  which would block the gateway); TEMP tables live in SQLite's temp database.
- PostgreSQL: a REPEATABLE READ transaction (one snapshot for all queries; writers are never
  blocked); TEMP tables are private to the connection.

The queries are written once, in the SQL both understand (COUNT(*) FILTER, IS NOT DISTINCT
FROM, ->>, CASE); `ReportConnection` spells the few things that differ: how a stored instant is
compared and turned into epoch seconds, and LEAST/GREATEST. Parameters are named (`:name`).
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from itilflow.reports.period import Period

_SQLITE_PRAGMAS = {"temp_store": 2, "cache_size": -131072}  # MEMORY; 128 MiB at most
# Sorts and hashes of a year of timeline in memory (the default is 4 MB per operation).
_POSTGRES_WORK_MEM = "64MB"

Row = tuple[Any, ...]
Params = Mapping[str, Any]


class ReportDatabaseError(RuntimeError):
    pass


class ReportConnection(ABC):
    """The report's queries on one connection inside the snapshot; rows come back as tuples."""

    dialect: str
    # The TEMP tables' column type for an instant comparable with the stored timestamps.
    time_type: str

    @abstractmethod
    def execute(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run one statement with named (:name) parameters; its rows, if any."""

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        """Run one statement once per parameter set."""

    @abstractmethod
    def time(self, value: datetime) -> Any:
        """A parameter comparable with a stored timestamp column."""

    @abstractmethod
    def epoch(self, column: str) -> str:
        """SQL: a stored timestamp column as seconds since the epoch, exact to the microsecond."""

    @abstractmethod
    def least(self, a: str, b: str) -> str:
        """SQL: the smaller of two non-NULL expressions."""

    @abstractmethod
    def greatest(self, a: str, b: str) -> str:
        """SQL: the larger of two non-NULL expressions."""

    @abstractmethod
    def analyze(self, table: str) -> None:
        """Let the planner know a freshly filled TEMP table's size (PostgreSQL has no
        statistics for it otherwise and plans as if it were tiny)."""


class SqliteReportConnection(ReportConnection):
    dialect = "sqlite"
    time_type = "TEXT"

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def execute(self, sql: str, params: Params | None = None) -> list[Row]:
        return self.connection.execute(sql, params or {}).fetchall()

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        self.connection.executemany(sql, rows)

    def time(self, value: datetime) -> str:
        # As SQLAlchemy stores DateTime in SQLite: text comparison is then time order.
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def epoch(self, column: str) -> str:
        # 'YYYY-MM-DD HH:MM:SS.ffffff': julianday() would round to ~50 us. unixepoch(): 3.38.
        return f"(unixepoch({column}) + CAST(substr({column}, 20) AS REAL))"

    def least(self, a: str, b: str) -> str:
        return f"MIN({a}, {b})"

    def greatest(self, a: str, b: str) -> str:
        return f"MAX({a}, {b})"

    def analyze(self, table: str) -> None:
        pass  # SQLite's planner does without statistics here


class PostgresReportConnection(ReportConnection):
    dialect = "postgresql"
    time_type = "TIMESTAMPTZ"

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def execute(self, sql: str, params: Params | None = None) -> list[Row]:
        result = self.connection.execute(text(sql), dict(params or {}))
        if not result.returns_rows:
            return []
        return [tuple(_plain(value) for value in row) for row in result]

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        if rows:  # an empty list would run the statement once, without its parameters
            self.connection.execute(text(sql), [dict(row) for row in rows])

    def time(self, value: datetime) -> datetime:
        return value.astimezone(UTC)

    def epoch(self, column: str) -> str:
        # EXTRACT gives an exact numeric; the report's arithmetic is in double precision.
        return f"CAST(EXTRACT(EPOCH FROM {column}) AS DOUBLE PRECISION)"

    def least(self, a: str, b: str) -> str:
        return f"LEAST({a}, {b})"

    def greatest(self, a: str, b: str) -> str:
        return f"GREATEST({a}, {b})"

    def analyze(self, table: str) -> None:
        self.connection.execute(text(f"ANALYZE {table}"))


def _plain(value: Any) -> Any:
    # PostgreSQL's SUM of integers and AVG are numeric: hand back what SQLite gives, int or float.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


@contextmanager
def snapshot(engine: Engine) -> Iterator[ReportConnection]:
    if engine.dialect.name == "sqlite":
        with _sqlite_snapshot(engine) as conn:
            yield conn
    elif engine.dialect.name == "postgresql":
        with _postgres_snapshot(engine) as conn:
            yield conn
    else:
        raise ReportDatabaseError(
            f"the monthly report's queries are written for SQLite and PostgreSQL, not "
            f"{engine.dialect.name}"
        )


@contextmanager
def _sqlite_snapshot(engine: Engine) -> Iterator[ReportConnection]:
    fairy = engine.raw_connection()
    connection = fairy.dbapi_connection
    assert isinstance(connection, sqlite3.Connection)
    previous = connection.isolation_level
    # Work tables and sorts in memory, and a page cache that holds a year of timeline: the
    # defaults (temp files, 2 MB of cache) make a 100,000-incident report much slower.
    pragmas = {name: connection.execute(f"PRAGMA {name}").fetchone()[0] for name in _SQLITE_PRAGMAS}
    try:
        connection.isolation_level = None  # we say BEGIN and ROLLBACK ourselves
        for name, value in _SQLITE_PRAGMAS.items():
            connection.execute(f"PRAGMA {name} = {value}")
        connection.execute("BEGIN")
        yield SqliteReportConnection(connection)
    finally:
        try:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            for name, value in pragmas.items():
                connection.execute(f"PRAGMA {name} = {value}")
            connection.isolation_level = previous
        except sqlite3.Error:
            # A connection in an unknown state does not go back to the pool.
            fairy.invalidate()
        fairy.close()


@contextmanager
def _postgres_snapshot(engine: Engine) -> Iterator[ReportConnection]:
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as connection:
        transaction = connection.begin()
        try:
            connection.execute(text(f"SET LOCAL work_mem = '{_POSTGRES_WORK_MEM}'"))
            yield PostgresReportConnection(connection)
        finally:
            transaction.rollback()


def existing_tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def epoch(value: datetime) -> float:
    return value.astimezone(UTC).timestamp()


def bind_list(prefix: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """SQL for `IN (...)` over `values` as named parameters, and those parameters."""
    names = [f"{prefix}_{index}" for index in range(len(values))]
    sql = ", ".join(f":{name}" for name in names) or "NULL"
    return sql, dict(zip(names, values, strict=True))


def write_months(conn: ReportConnection, months: Sequence[Period], as_of: datetime) -> None:
    """(Re)write the TEMP table `_rpt_month` every section reads: one row per report month,
    oldest first (idx 0), with its bounds as epoch seconds and as instants comparable with the
    stored timestamps (start_at, end_at); `end_eff_s` stops at `as_of` for the month under way."""
    as_of_s = epoch(as_of)
    conn.execute("DROP TABLE IF EXISTS _rpt_month")
    conn.execute(
        "CREATE TEMP TABLE _rpt_month (idx INTEGER PRIMARY KEY, key TEXT, "
        "start_s DOUBLE PRECISION, end_s DOUBLE PRECISION, end_eff_s DOUBLE PRECISION, "
        f"start_at {conn.time_type}, end_at {conn.time_type})"
    )
    conn.executemany(
        "INSERT INTO _rpt_month VALUES (:idx, :key, :start_s, :end_s, :end_eff_s, :start_at, "
        ":end_at)",
        [
            {
                "idx": index,
                "key": month.key,
                "start_s": epoch(month.start),
                "end_s": epoch(month.end),
                "end_eff_s": min(epoch(month.end), as_of_s),
                "start_at": conn.time(month.start),
                "end_at": conn.time(month.end),
            }
            for index, month in enumerate(months)
        ],
    )
