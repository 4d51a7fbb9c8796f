"""A read-only snapshot of the database for the report's queries.

The report reads with one deferred transaction on a raw SQLite connection: every query sees the
same snapshot, and its TEMP work tables (month bounds, business calendars, per-incident facts) live
in SQLite's temp database, so the main database is never write-locked while the report runs
(the application's sessions start with BEGIN IMMEDIATE, which would block the gateway).
The transaction is rolled back at the end, which also drops the TEMP tables.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from itilflow.reports.period import Month

_PRAGMAS = {"temp_store": 2, "cache_size": -131072}  # MEMORY; 128 MiB at most


class ReportDatabaseError(RuntimeError):
    pass


@contextmanager
def snapshot(engine: Engine) -> Iterator[sqlite3.Connection]:
    if engine.dialect.name != "sqlite":
        raise ReportDatabaseError(
            f"the monthly report's queries are written for SQLite; {engine.dialect.name} "
            "is not supported yet"
        )
    fairy = engine.raw_connection()
    connection = fairy.dbapi_connection
    assert isinstance(connection, sqlite3.Connection)
    previous = connection.isolation_level
    # Work tables and sorts in memory, and a page cache that holds a year of timeline: the
    # defaults (temp files, 2 MB of cache) make a 100,000-incident report much slower.
    pragmas = {name: connection.execute(f"PRAGMA {name}").fetchone()[0] for name in _PRAGMAS}
    try:
        connection.isolation_level = None  # we say BEGIN and ROLLBACK ourselves
        for name, value in _PRAGMAS.items():
            connection.execute(f"PRAGMA {name} = {value}")
        connection.execute("BEGIN")
        yield connection
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


def existing_tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def sql_time(value: datetime) -> str:
    """A UTC instant as SQLAlchemy stores DateTime in SQLite, so text comparison is time order."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def epoch(value: datetime) -> float:
    return value.astimezone(UTC).timestamp()


def epoch_sql(column: str) -> str:
    """SQL: seconds since the epoch of a stored DateTime column ('YYYY-MM-DD HH:MM:SS.ffffff'),
    exact to the microsecond (julianday() would round to ~50 us). unixepoch(): SQLite >= 3.38."""
    return f"(unixepoch({column}) + CAST(substr({column}, 20) AS REAL))"


def write_months(conn: sqlite3.Connection, months: Sequence[Month], as_of: datetime) -> None:
    """(Re)write the TEMP table `_rpt_month` every section reads: one row per report month,
    oldest first (idx 0), with its bounds as epoch seconds and as stored text; `end_eff_s` stops
    at `as_of` for the month under way."""
    as_of_s = epoch(as_of)
    conn.execute("DROP TABLE IF EXISTS temp._rpt_month")
    conn.execute(
        "CREATE TEMP TABLE _rpt_month (idx INTEGER PRIMARY KEY, key TEXT, start_s REAL, "
        "end_s REAL, end_eff_s REAL, start_txt TEXT, end_txt TEXT)"
    )
    conn.executemany(
        "INSERT INTO _rpt_month VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                index,
                month.key,
                epoch(month.start),
                epoch(month.end),
                min(epoch(month.end), as_of_s),
                sql_time(month.start),
                sql_time(month.end),
            )
            for index, month in enumerate(months)
        ],
    )
