"""Alembic's environment for itilflow: run by `upgrade_database` (which hands over its own
connection) and by `alembic` commands made with `alembic_config(url)` (new revisions)."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

from itilflow import models  # noqa: F401  (registers every table on the metadata)
from itilflow.models.db import UTCDateTime, get_engine


def render_plain_type(kind: str, item: Any, _context: Any) -> str | bool:
    """A new revision names plain SQLAlchemy types, not the models' own: the revision must do
    the same thing for ever, whatever later becomes of the models."""
    if kind == "type" and isinstance(item, AutoString):
        return f"sa.String(length={item.length})" if item.length else "sa.String()"
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        # SQLite alters a table by copying it: new revisions are written in batch mode (which
        # on PostgreSQL is plain ALTER TABLE).
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=render_plain_type,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: alembic_config(url) names one")
    with get_engine(url).begin() as own_connection:
        run_migrations(own_connection)
