"""`itilflow db copy`: an SQLite installation moved into an empty database (PostgreSQL in the
PostgreSQL pass, another SQLite file otherwise) keeps every row and goes on working."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from itilflow.cli import main
from itilflow.models import (
    Change,
    Incident,
    TimelineEntry,
    add_timeline,
    get_engine,
    get_incident,
    session_scope,
)
from itilflow.models.migrations import check_database, upgrade_database
from tests.migrations.support import FIXTURE_COUNTS, load_c2ee023


@pytest.fixture
def installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The c2ee023 installation, upgraded, as the SQLite database of the settings."""
    data = tmp_path / "data"
    data.mkdir()
    url = f"sqlite:///{data / 'itilflow.db'}"
    load_c2ee023(url)
    upgrade_database(get_engine(url))
    monkeypatch.setenv("ITILFLOW_DATA_DIR", str(data))
    monkeypatch.setenv("ITILFLOW_DATABASE_URL", url)
    return get_engine(url)


def copy(target: str) -> int:
    return main(["db", "copy", "--to", target])


def every_value(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's rows as the models read them (aware datetimes, parsed JSON, enums)."""
    with engine.connect() as connection:
        return {
            table.name: sorted((tuple(row) for row in connection.execute(select(table))), key=repr)
            for table in SQLModel.metadata.sorted_tables
        }


def test_db_copy_moves_every_row_and_the_copy_works(
    installation: Engine, empty_database: Callable[[], str], capsys: pytest.CaptureFixture[str]
) -> None:
    target_url = empty_database()

    assert copy(target_url) == 0

    out = capsys.readouterr().out
    for table, count in FIXTURE_COUNTS.items():
        assert re.search(rf"^\s+{table}\s+{count} rows$", out, re.MULTILINE), out
    assert "counts equal" in out
    target = get_engine(target_url)
    check_database(target)
    assert every_value(target) == every_value(installation)
    with target.connect() as connection:
        # A JSON column's SQL NULL stays one (the JSON type alone would write a JSON null).
        labels = Incident.__table__.c.labels  # type: ignore[attr-defined]
        nulls = select(func.count()).where(labels.is_(None))
        assert connection.execute(nulls).scalar_one() == 1

    with session_scope(target) as session:
        incident = get_incident(session=session, incident_id=1)
        assert incident is not None and incident.title == "Core switch down"
        child = get_incident(session=session, incident_id=2)
        assert child is not None and child.parent_id == 1
        new = Incident(title="first on the new database")
        session.add(new)
        session.flush()
        assert new.id == 4
        add_timeline(session=session, incident_id=new.id, actor="test", kind="opened")
        change = Change(title="next change")
        session.add(change)
        session.flush()
        assert change.id == 3
    with session_scope(target) as session:
        assert session.exec(select(func.max(TimelineEntry.id))).one()[0] == 4


def test_db_copy_refuses_a_target_that_holds_rows(
    installation: Engine, empty_database: Callable[[], str], capsys: pytest.CaptureFixture[str]
) -> None:
    target_url = empty_database()
    assert copy(target_url) == 0
    before = every_value(get_engine(target_url))
    capsys.readouterr()

    assert copy(target_url) == 1

    assert "is not empty (rows in" in capsys.readouterr().err
    assert every_value(get_engine(target_url)) == before


def test_db_copy_refuses_a_source_behind_the_code(
    tmp_path: Path,
    empty_database: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite:///{tmp_path / 'itilflow.db'}"
    load_c2ee023(url)  # not upgraded
    monkeypatch.setenv("ITILFLOW_DATABASE_URL", url)
    target_url = empty_database()

    assert copy(target_url) == 1

    assert "itilflow db upgrade" in capsys.readouterr().err
    assert inspect(get_engine(target_url)).get_table_names() == []
