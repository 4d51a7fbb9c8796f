"""Empty databases for the migration tests: a file in tmp_path, or (ITILFLOW_TEST_DATABASE=
postgresql) a new database on the session's PostgreSQL server, without the template's schema."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from itilflow.models import get_engine
from tests.conftest import ON_POSTGRES

_numbers = itertools.count(1)


@pytest.fixture
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes empty databases and hands back their URLs; drops them after the test."""
    made: list[str] = []

    def make() -> str:
        number = next(_numbers)
        if not ON_POSTGRES:
            url = f"sqlite:///{tmp_path / f'empty_{number}.db'}"
        else:
            server = request.getfixturevalue("postgres")
            name = f"itilflow_empty_{number}"
            server.create_database(name)
            url = server.url(name)
        made.append(url)
        return url

    yield make
    for url in made:
        get_engine(url).dispose()
        if ON_POSTGRES:
            request.getfixturevalue("postgres").drop_database(url.rsplit("/", 1)[1])
