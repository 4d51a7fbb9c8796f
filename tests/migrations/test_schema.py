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


def catalog(url: str) -> set[tuple[str, ...]]:
    """What the database holds, as a set (the order of columns and constraints left out): every
    table's column and constraint clauses and every index and enum type, as the database
    itself states them. Also what compare_metadata does not look at: partial indexes' WHERE,
    enum members, server defaults."""
    engine = get_engine(url)
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(
                "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE '%alembic_version%'"
            )
            found: set[tuple[str, ...]] = set()
            for kind, name, sql in rows:
                if kind == "table":
                    # A column added later (ALTER TABLE) is spliced into the stored text.
                    body = sql[sql.index("(") + 1 : sql.rindex(")")]
                    found |= {(name, clause) for clause in _clauses(body)}
                else:
                    found.add((kind, name, sql or ""))
            return found
        return {
            tuple(row)
            for row in connection.exec_driver_sql(
                """
                SELECT 'column', table_name, column_name, data_type,
                       coalesce(character_maximum_length::text, ''), is_nullable,
                       coalesce(column_default, ''), coalesce(udt_name, '')
                FROM information_schema.columns
                WHERE table_schema = 'public' AND table_name != 'alembic_version'
                UNION ALL
                SELECT 'constraint', conrelid::regclass::text, conname, pg_get_constraintdef(oid),
                       '', '', '', ''
                FROM pg_constraint
                WHERE connamespace = 'public'::regnamespace
                  AND conrelid::regclass::text != 'alembic_version'
                UNION ALL
                SELECT 'index', tablename, indexname, indexdef, '', '', '', ''
                FROM pg_indexes
                WHERE schemaname = 'public' AND tablename != 'alembic_version'
                UNION ALL
                SELECT 'enum', t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder),
                       '', '', '', '', ''
                FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
                GROUP BY t.typname
                """
            )
        }


def _clauses(body: str) -> set[str]:
    clauses, depth, current = set(), 0, ""
    for char in body:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            clauses.add(" ".join(current.split()))
            current = ""
        else:
            current += char
    clauses.add(" ".join(current.split()))
    return clauses


def test_the_migrations_make_what_create_all_makes(empty_database: Callable[[], str]) -> None:
    """What lets an installation made by create_all before migrations be adopted as 0001, and
    what tells a later revision that does not match its model change."""
    migrated, created = empty_database(), empty_database()
    upgrade_database(get_engine(migrated))
    SQLModel.metadata.create_all(get_engine(created))
    assert catalog(migrated) == catalog(created)
    assert any(
        "ux_problem_open_match" in " ".join(row) and "WHERE" in " ".join(row)
        for row in catalog(migrated)
    )


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
