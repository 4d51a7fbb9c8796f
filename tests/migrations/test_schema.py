"""The revisions make exactly the models' schema, and the version checks say so."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from itilflow import models  # noqa: F401  (registers every table on the metadata)
from itilflow.models import get_engine
from itilflow.models.migrations import (
    BASELINE,
    BASELINE_TABLES,
    DatabaseAheadError,
    DatabaseBehindError,
    check_database,
    current_revision,
    head_revision,
    upgrade_database,
)


def differences(url: str) -> list[object]:
    with get_engine(url).connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, SQLModel.metadata))


def test_the_migrations_make_the_models_schema(empty_database: Callable[[], str]) -> None:
    url = empty_database()
    upgrade_database(get_engine(url))
    assert differences(url) == []
    assert current_revision(get_engine(url)) == head_revision()


def test_the_baseline_holds_every_table_of_its_time(empty_database: Callable[[], str]) -> None:
    """BASELINE_TABLES (what an installation made before migrations must have) is what 0001
    makes: a table added by a later revision must not be added to it."""
    from alembic import command

    from itilflow.models.migrations import _migrating, alembic_config

    url = empty_database()
    with _migrating(get_engine(url)) as connection:
        command.upgrade(alembic_config(connection=connection), BASELINE)
    tables = set(inspect(get_engine(url)).get_table_names()) - {"alembic_version"}
    assert tables == BASELINE_TABLES


def test_a_second_upgrade_changes_nothing(empty_database: Callable[[], str]) -> None:
    engine = get_engine(empty_database())
    upgrade_database(engine)
    upgrade_database(engine)
    check_database(engine)


def test_processes_refuse_an_empty_database(empty_database: Callable[[], str]) -> None:
    engine = get_engine(empty_database())
    with pytest.raises(DatabaseBehindError, match="itilflow db upgrade"):
        check_database(engine)
    assert inspect(engine).get_table_names() == []


def test_a_database_from_a_newer_itilflow_is_refused_and_left_alone(
    empty_database: Callable[[], str],
) -> None:
    engine = get_engine(empty_database())
    upgrade_database(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(DatabaseAheadError, match="9999"):
        upgrade_database(engine)
    with pytest.raises(DatabaseAheadError, match="9999"):
        check_database(engine)
    assert current_revision(engine) == "9999"
