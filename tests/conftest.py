"""Shared fixtures: one Prefect test server for the session, real SMTP and HTTP peers, a
gateway app on a fresh database, and the clock.

ITILFLOW_TEST_DATABASE=postgresql runs the same tests on PostgreSQL: a throwaway server for the
session (tests/support/postgres.py), a fresh itilflow database per test (cloned from a template
that has the schema) and the session's Prefect test server on a database of that server too.
`pytest -m postgres` selects the set CI runs that way (POSTGRES_SUITE below).
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from itilflow import clock, runtime
from itilflow.demo import load_people
from itilflow.settings import Settings
from tests.support.alertmanager import alertmanager_factory  # noqa: F401
from tests.support.fixtures import http_sink, smtp_server  # noqa: F401
from tests.support.http_sink import HttpSink
from tests.support.parsed_once import parsed_once
from tests.support.postgres import PostgresServer, postgres_server, prefect_harness_on
from tests.support.smtp import SmtpCapture
from tests.support.stack import kill_leftovers

# The fault suite's figures table (a plugin here: xdist's controller loads only this conftest).
pytest_plugins = ["tests.support.fault_figures"]

ON_POSTGRES = os.environ.get("ITILFLOW_TEST_DATABASE", "").lower() in ("postgresql", "postgres")

# The tests that CI runs a second time on PostgreSQL (marked `postgres`): intake through the
# gateway (with the real Alertmanager), the incident flows under the engine, SLA timers, changes
# (approval by link, steps, rollback), problems and the monthly report, whose SQL differs most.
POSTGRES_SUITE = (
    "tests/gateway",
    "tests/flows",
    "tests/test_sla_timers.py",
    "tests/changes/test_change_process.py",
    "tests/security/test_signin.py",
    "tests/problems/test_detection.py",
    "tests/problems/test_lifecycle.py",
    "tests/reports",
    "tests/test_stack.py",
    "tests/migrations",
    "tests/directory",
    "tests/console/test_reporter_and_queues.py",  # the queues' counts, filters and search
    "tests/proactive",  # one open notice per CI and kind: a partial unique index
    "tests/callbacks/test_callback_rules.py",  # the callbacks' conditional updates, report SQL
)


# Tests of the set that only work on SQLite, and why: left out of it and skipped on PostgreSQL.
SQLITE_ONLY = {
    "tests/gateway/test_intake.py::test_a_failed_transaction_stores_nothing_and_answers_503": (
        "breaks the transaction with a trigger in SQLite's syntax"
    ),
    "tests/gateway/test_alertmanager_intake.py::"
    "test_a_failed_transaction_stores_nothing_and_answers_503": (
        "breaks the transaction with a trigger in SQLite's syntax"
    ),
}


# Under pytest-xdist (.ci/run: -n 2 --dist loadgroup) the tests that start a whole stack (`itilflow
# up`, a fleet of workers, a README run on the default ports in a namespace) run one after the
# other in one worker: two at once on 2 cores make each slow enough to time out, and the other
# worker meanwhile runs the fast tests. Files, as in POSTGRES_SUITE.
ONE_STACK_AT_A_TIME = (
    "tests/test_stack.py",
    "tests/test_readme.py",
    "tests/faults/test_workers.py",
    "tests/faults/test_stack_crash_mid_step.py",
    "tests/faults/test_change_worker_kill.py",
    "tests/security/test_stack_attacks.py",
)
STACK_GROUP = "stack"


def _in(where: str, entries: tuple[str, ...]) -> bool:
    return any(where == entry or where.startswith(entry + "/") for entry in entries)


def _shares_a_module_fixture(item: pytest.Item) -> bool:
    """The test uses a fixture of module or class scope (a peer server, a Prefect server): its
    module's tests then run in one worker, which sets the fixture up once, not once a test."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        definitions[-1].scope in ("module", "class", "package")
        for definitions in info.name2fixturedefs.values()
        if definitions
    )


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        where = Path(str(item.path)).relative_to(root).as_posix()
        if _in(where, ONE_STACK_AT_A_TIME):
            item.add_marker(pytest.mark.xdist_group(STACK_GROUP))
        elif _shares_a_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(where))
        if item.nodeid in SQLITE_ONLY:
            if ON_POSTGRES:
                item.add_marker(pytest.mark.skip(reason=f"SQLite only: {SQLITE_ONLY[item.nodeid]}"))
            continue
        if _in(where, POSTGRES_SUITE):
            item.add_marker(pytest.mark.postgres)


@pytest.hookimpl(trylast=True)  # after the session's fixtures (the harness's server) are done
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop every Prefect server Prefect started in this process and still holds (an ephemeral
    one, for a client asked outside the prefect_server fixture) while the session can still
    do it in order. Its atexit hook should, yet a `-n 2` run left one such server per worker
    running (orphaned, their parent gone) for good."""
    server_module = sys.modules.get("prefect.server.api.server")
    if server_module is None:
        return
    for server in list(server_module.SubprocessASGIServer._instances.values()):
        server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the session (skips without PostgreSQL, fails in CI)."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def _itilflow_template(postgres: PostgresServer) -> str:
    """A database with itilflow's schema, which each test's database is a copy of."""
    from itilflow.models import get_engine
    from itilflow.models.migrations import upgrade_database

    name = "itilflow_template"
    postgres.create_database(name)
    engine = get_engine(postgres.url(name))
    upgrade_database(engine)
    engine.dispose()  # a template must have no connections when it is copied
    return name


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file with itilflow's schema at head: a test's database is a copy of it (a
    copy takes about a millisecond, running the migrations some 70)."""
    from itilflow.models import get_engine
    from itilflow.models.migrations import upgrade_database

    path = tmp_path_factory.mktemp("template") / "itilflow.db"
    engine = get_engine(f"sqlite:///{path}")
    upgrade_database(engine)
    engine.dispose()  # the last connection's close folds the WAL back into the file
    return path


_database_numbers = itertools.count(1)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """itilflow's database for one test, with the schema at head: SQLite in tmp_path (where
    Settings(data_dir=tmp_path) looks for it), or a fresh PostgreSQL database."""
    if not ON_POSTGRES:
        path = tmp_path / "itilflow.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    from itilflow.models import get_engine

    server: PostgresServer = request.getfixturevalue("postgres")
    template = request.getfixturevalue("_itilflow_template")
    name = f"itilflow_test_{next(_database_numbers)}"
    # FILE_COPY: with fsync off it is about 4x faster than WAL_LOG for a small database.
    with server.connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
    url = server.url(name)
    yield url
    get_engine(url).dispose()
    server.drop_database(name)


@pytest.fixture(autouse=True)
def _itilflow_database(request: pytest.FixtureRequest) -> Iterator[None]:
    """On PostgreSQL, every Settings() of the test (and the processes it starts) gets the
    test's own database; on SQLite the default (data_dir/itilflow.db) is already per test."""
    if not ON_POSTGRES:
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ITILFLOW_DATABASE_URL", request.getfixturevalue("database_url"))
        yield


@pytest.fixture
def stack_database_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment that puts `itilflow up`'s databases on PostgreSQL: the test's itilflow
    database and a fresh one for the Prefect server it starts (empty on SQLite)."""
    if not ON_POSTGRES:
        return {}
    server: PostgresServer = request.getfixturevalue("postgres")
    name = f"prefect_stack_{next(_database_numbers)}"
    server.create_database(name)

    def check_and_drop() -> None:
        # The stack's Prefect server really kept its runs there, not in a SQLite file.
        with server.connect(name) as conn:
            runs = conn.execute("SELECT count(*) FROM flow_run").fetchone()
        server.drop_database(name)
        assert runs and runs[0] > 0, "the Prefect server of itilflow up ran nothing on PostgreSQL"

    request.addfinalizer(check_and_drop)
    return {
        "ITILFLOW_DATABASE_URL": request.getfixturevalue("database_url"),
        "ITILFLOW_PREFECT_DATABASE_URL": server.url(name, driver="asyncpg"),
    }


@pytest.fixture(scope="session")
def prefect_server(request: pytest.FixtureRequest) -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    # The test server's telemetry writes race its own SQLite writes; nothing is sent out anyway.
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    if ON_POSTGRES:
        server: PostgresServer = request.getfixturevalue("postgres")
        server.create_database("prefect")
        with prefect_harness_on(server.url("prefect", driver="asyncpg"), startup_timeout=120):
            yield
        return
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session", autouse=True)
def _parsed_once() -> Iterator[None]:
    """Policy folders and demo data parsed once a session (tests/support/parsed_once.py)."""
    with parsed_once():
        yield


@pytest.fixture(autouse=True)
def _no_stack_left() -> Iterator[None]:
    """Kill whatever is left of the `itilflow up`s the test started (tests/support/stack.py),
    however it ended: a failed or timed-out test must not leave a stack running for the rest."""
    yield
    kill_leftovers()


@pytest.fixture(autouse=True)
def _reset_clock() -> Iterator[None]:
    clock.reset()
    yield
    clock.reset()


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "api_token": SecretStr(secrets.token_urlsafe(32)),
        "secret_key": SecretStr(secrets.token_urlsafe(32)),
        "public_url": "http://testserver",
        "smtp_host": "127.0.0.1",
        "smtp_port": 9,  # nothing listens: tests that mail pass their SMTP server's port
        "smtp_timeout": 3.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def write_apprise_config(path: Path, sink: HttpSink, tags: list[str]) -> Path:
    lines = ["urls:", f"  - {sink.apprise_url()}:", f"    - tag: {', '.join(tags)}"]
    path.write_text("\n".join(lines) + "\n")
    return path


ALL_TAGS = [
    "oncall-chat",
    "sms",
    "team-chat",
    "servicedesk-chat",
    "hardware-chat",
    "applications-chat",
    "network-chat",
    "dba-chat",
    "security-chat",
]


@pytest.fixture
def settings(
    tmp_path: Path,
    database_url: str,  # the schema, made as `itilflow db upgrade` does
    smtp_server: SmtpCapture,  # noqa: F811
    http_sink: HttpSink,  # noqa: F811
) -> Settings:
    return make_settings(
        tmp_path,
        smtp_port=smtp_server.port,
        apprise_config=write_apprise_config(tmp_path / "apprise.yaml", http_sink, ALL_TAGS),
    )


@pytest.fixture
def rt(settings: Settings) -> runtime.Runtime:
    current = runtime.configure(settings)
    load_people(settings)
    return current


@pytest.fixture
def client(rt: runtime.Runtime) -> Iterator[object]:
    from fastapi.testclient import TestClient

    from itilflow.gateway.app import create_app

    with TestClient(create_app(rt.settings, rt.policies)) as test_client:
        assert rt.settings.api_token is not None
        test_client.headers["Authorization"] = f"Bearer {rt.settings.api_token.get_secret_value()}"
        yield test_client
