"""Alembic's environment for itilflow: run by `upgrade_database` (which hands over its own
connection) and by `alembic` commands made with `alembic_config(url)` (new revisions)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from itilflow import models  # noqa: F401  (registers every table on the metadata)
from itilflow.models.db import get_engine


def run_migrations(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        # SQLite alters a table by copying it: batch mode writes that copy for later revisions.
        render_as_batch=connection.dialect.name == "sqlite",  # type: ignore[attr-defined]
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
