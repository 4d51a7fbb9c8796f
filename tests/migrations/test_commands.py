"""`itilflow db upgrade|current`, `up` upgrading first, and the processes refusing a database
whose schema is not the code's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from itilflow import runtime
from itilflow.cli import main
from itilflow.models import get_engine
from itilflow.models.migrations import (
    DatabaseAheadError,
    DatabaseBehindError,
    current_revision,
    head_revision,
    upgrade_database,
)
from itilflow.settings import Settings
from tests.conftest import make_settings
from tests.migrations.support import load_c2ee023


@pytest.fixture(autouse=True)
def _keep_the_runtime() -> Iterator[None]:
    # The tests configure runtimes on refused databases: the next test must not inherit one.
    saved = runtime._current
    yield
    runtime._current = saved


@pytest.fixture
def use_database(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    def use(url: str) -> None:
        monkeypatch.setenv("ITILFLOW_DATABASE_URL", url)

    return use


def make_ahead(url: str) -> None:
    engine = get_engine(url)
    upgrade_database(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")


def test_db_upgrade_then_current(
    empty_database: Callable[[], str],
    use_database: Callable[[str], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = empty_database()
    use_database(url)
    assert main(["db", "current"]) == 1
    assert "current:  none" in capsys.readouterr().out

    assert main(["db", "upgrade"]) == 0
    assert f"created at revision {head_revision()}" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert "nothing to do" in capsys.readouterr().out

    assert main(["db", "current"]) == 0
    out = capsys.readouterr().out
    assert f"current:  {head_revision()}" in out and f"head:     {head_revision()}" in out


def test_db_upgrade_adopts_an_installation_from_before_migrations(
    empty_database: Callable[[], str],
    use_database: Callable[[str], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = empty_database()
    load_c2ee023(url)
    use_database(url)
    assert main(["db", "current"]) == 1
    assert "behind the code: run `itilflow db upgrade`" in capsys.readouterr().out

    assert main(["db", "upgrade"]) == 0

    assert "made before migrations: adopted as revision 0001" in capsys.readouterr().out
    assert current_revision(get_engine(url)) == head_revision()


def test_db_upgrade_refuses_a_database_newer_than_the_code(
    empty_database: Callable[[], str],
    use_database: Callable[[str], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = empty_database()
    make_ahead(url)
    use_database(url)

    assert main(["db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert "revision 9999, which this itilflow does not know" in err
    assert main(["db", "current"]) == 1
    assert "NEWER than this itilflow" in capsys.readouterr().out
    assert current_revision(get_engine(url)) == "9999"


def test_up_refuses_a_database_newer_than_the_code_before_starting_anything(
    tmp_path: Path,
    empty_database: Callable[[], str],
    use_database: Callable[[str], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = empty_database()
    make_ahead(url)
    use_database(url)

    assert main(["--data-dir", str(tmp_path), "up", "--demo", "--workers", "0"]) == 1

    captured = capsys.readouterr()
    assert "9999, which this itilflow does not know" in captured.err
    # up's stage lines ("demo inbox ... started", "prefect server ... ready in N s"): none.
    assert " ... " not in captured.out
    assert not (tmp_path / "logs").exists()  # no child was started


def test_the_processes_refuse_an_empty_database_and_create_nothing(
    tmp_path: Path, empty_database: Callable[[], str]
) -> None:
    url = empty_database()
    settings = make_settings(tmp_path, database_url=url)

    with pytest.raises(DatabaseBehindError, match="is empty .*itilflow db upgrade"):
        runtime.configure(settings).engine  # noqa: B018  (the runner, flow runs)
    from itilflow.gateway.app import create_app

    with pytest.raises(DatabaseBehindError, match="itilflow db upgrade"):
        create_app(settings)
    assert inspect(get_engine(url)).get_table_names() == []


def test_a_missing_sqlite_file_is_not_created_by_a_process(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "nowhere", _env_file=None)  # type: ignore[call-arg]
    settings.database_url = f"sqlite:///{tmp_path / 'nowhere' / 'itilflow.db'}"

    with pytest.raises(DatabaseBehindError, match="is empty"):
        runtime.configure(settings).engine  # noqa: B018
    assert not (tmp_path / "nowhere" / "itilflow.db").exists()


def test_the_processes_refuse_a_database_newer_than_the_code(
    tmp_path: Path, empty_database: Callable[[], str]
) -> None:
    url = empty_database()
    make_ahead(url)
    with pytest.raises(DatabaseAheadError, match="9999"):
        runtime.configure(make_settings(tmp_path, database_url=url)).engine  # noqa: B018
