"""Loading the pre-migration fixtures (fixtures/make_c2ee023.py) and reading every row back."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from itilflow.models.migrations import BASELINE_TABLES

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Rows per table in the fixtures: every table has some (the test would not notice a lost table
# otherwise).
FIXTURE_COUNTS = {
    "approvalcode": 1,
    "approvalrequest": 2,
    "change": 2,
    "changeentry": 1,
    "checkresult": 2,
    "configurationitem": 2,
    "engineer": 2,
    "flowtrigger": 2,
    "group": 2,
    "incident": 3,
    "inspectionrun": 1,
    "knowledgearticle": 1,
    "problem": 2,
    "problementry": 1,
    "problemincident": 1,
    "timelineentry": 3,
}
assert set(FIXTURE_COUNTS) == BASELINE_TABLES


def load_c2ee023(url: str) -> None:
    """Restore the database of an installation of c2ee023 into the empty database at `url`."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database
        connection = sqlite3.connect(parsed.database)
        try:
            connection.executescript((FIXTURES / "c2ee023.sqlite.sql").read_text("utf-8"))
        finally:
            connection.close()
        return
    import psycopg

    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute((FIXTURES / "c2ee023.postgresql.sql").read_text("utf-8"))  # type: ignore[arg-type]


def every_row(
    engine: Engine, columns: dict[str, list[str]] | None = None
) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, list[str]]]:
    """Each baseline table's rows as stored (sorted), and its columns. Given `columns`, only
    those are read: a later revision may add columns, never lose one of these."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    found: dict[str, list[str]] = {}
    with engine.connect() as connection:
        quote = connection.dialect.identifier_preparer.quote
        for table in sorted(BASELINE_TABLES):
            wanted = ", ".join(quote(c) for c in columns[table]) if columns else "*"
            result = connection.execute(text(f"SELECT {wanted} FROM {quote(table)}"))
            found[table] = list(result.keys())
            rows[table] = sorted((tuple(row) for row in result), key=repr)
    return rows, found
