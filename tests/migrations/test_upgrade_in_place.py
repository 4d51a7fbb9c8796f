"""An installation made by c2ee023 (before migrations) upgrades in place with nothing lost."""

from __future__ import annotations

from collections.abc import Callable

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
