"""An installation made by c2ee023 (before migrations) upgrades in place with nothing lost."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from itilflow.models import (
    Change,
    ChangeStatus,
    Incident,
    IncidentStatus,
    KnowledgeArticle,
    get_engine,
    get_incident,
    session_scope,
)
from itilflow.models.migrations import (
    BASELINE,
    SchemaVersionError,
    check_database,
    current_revision,
    head_revision,
    upgrade_database,
    upgrade_database_reporting,
)
from tests.conftest import ON_POSTGRES
from tests.migrations.support import FIXTURE_COUNTS, every_row, load_c2ee023


def test_an_installation_of_c2ee023_upgrades_and_keeps_every_row(
    empty_database: Callable[[], str],
) -> None:
    engine = get_engine(empty_database())
    load_c2ee023(engine.url.render_as_string(hide_password=False))
    before, columns = every_row(engine)
    assert {table: len(rows) for table, rows in before.items()} == FIXTURE_COUNTS
    assert current_revision(engine) is None

    said = upgrade_database_reporting(engine)

    assert f"adopted as revision {BASELINE}" in said
    assert current_revision(engine) == head_revision()
    check_database(engine)  # the processes accept it now
    after, _ = every_row(engine, columns)
    assert after == before


def test_the_upgraded_installation_works_through_the_models(
    empty_database: Callable[[], str],
) -> None:
    engine = get_engine(empty_database())
    load_c2ee023(engine.url.render_as_string(hide_password=False))
    upgrade_database(engine)

    with session_scope(engine) as session:
        parent = get_incident(session=session, incident_id=1)
        assert parent is not None
        assert parent.title == "Core switch down"
        assert parent.status is IncidentStatus.resolved
        assert parent.labels == {"alertname": "SwitchDown", "severity": "critical"}
        assert parent.opened_at.tzinfo is not None and parent.opened_at.hour == 8
        assert parent.survey_comment == "très bien"
        child = get_incident(session=session, incident_id=2)
        assert child is not None and child.parent_id == 1
        change = session.get(Change, 1)
        assert change is not None and change.status is ChangeStatus.awaiting_approval
        assert change.plan["steps"][0]["undo"] == "echo back"
        article = session.get(KnowledgeArticle, 1)
        assert article is not None and article.keyword_list == ["psu", "switch", "core"]
        new = Incident(title="after the upgrade")
        session.add(new)
        session.flush()
        assert new.id == 4  # the ids go on where the installation left them


def test_a_database_with_only_some_of_the_tables_is_not_adopted(
    empty_database: Callable[[], str],
) -> None:
    engine = get_engine(empty_database())
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE incident (id INTEGER PRIMARY KEY)"))
    with pytest.raises(SchemaVersionError, match="not .*approvalcode"):
        upgrade_database(engine)
    assert inspect(engine).get_table_names() == ["incident"]


LATER_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "0099"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # What SQLite needs for any change but an added column: a copy of the table, here of the
    # table most others point to.
    with op.batch_alter_table("incident", recreate="always") as batch:
        batch.alter_column("title", existing_type=sa.String(300), type_=sa.String(400))


def downgrade() -> None:
    pass
"""


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite's table copy; PostgreSQL alters in place")
def test_a_later_revision_that_copies_a_table_keeps_every_row_and_reference(
    tmp_path: Path, empty_database: Callable[[], str]
) -> None:
    """What a revision after 0001 meets on SQLite: the copied table's old self is dropped while
    others point to it, which only works with foreign keys off (`_migrating`)."""
    from alembic import command

    from itilflow.models.migrations import HERE, _check_foreign_keys, _migrating, alembic_config

    scripts = tmp_path / "migrations"
    shutil.copytree(HERE, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    later = scripts / "versions" / "0099_copy_incident.py"
    later.write_text(LATER_REVISION.replace("{head}", head_revision()))
    engine = get_engine(empty_database())
    load_c2ee023(engine.url.render_as_string(hide_password=False))
    upgrade_database(engine)
    before, columns = every_row(engine)

    with _migrating(engine) as connection:
        config = alembic_config(connection=connection)
        config.set_main_option("script_location", str(scripts))
        command.upgrade(config, "head")
        _check_foreign_keys(connection)

    assert current_revision(engine) == "0099"
    assert every_row(engine, columns)[0] == before
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        sql = connection.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'incident'"
        ).scalar_one()
        assert "VARCHAR(400)" in sql
