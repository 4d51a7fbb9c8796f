"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl in a temp folder, 127.0.0.1 only.

    with running_postgres() as server:
        server.create_database("itilflow_1")
        url = server.url("itilflow_1")  # postgresql+psycopg://postgres@127.0.0.1:PORT/itilflow_1

Trust authentication on loopback (initdb --auth=trust): the cluster lives as long as the test
session, so no password is made or stored. As root the server runs as the `postgres` OS user
(PostgreSQL refuses to run as root). Durability is switched off (fsync, synchronous commit,
full-page writes): the data is thrown away at the end, and creating a database per test is then
cheap.

`postgres_server()` (the session fixture in tests/conftest.py calls it) skips when the binaries
are missing, naming what to install, except in CI (CI=true), where a missing PostgreSQL fails.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.smtp import free_port

SUPERUSER = "postgres"
INSTALL_HINT = (
    "PostgreSQL server binaries not found (initdb, pg_ctl): install Debian's `postgresql` "
    "(.ci/install-test-deps.sh does), or point ITILFLOW_POSTGRES_BIN at their folder"
)
# Settings of a test cluster: durability off, small memory, room for a Prefect server, a stack
# and the per-test engines at once.
SERVER_OPTIONS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
}


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed here (a skip locally, a failure in CI)."""


class PostgresError(RuntimeError):
    """PostgreSQL is installed but did not do what we asked (always a failure)."""


def find_postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl: ITILFLOW_POSTGRES_BIN, Debian's newest, or the PATH."""
    candidates: list[Path] = []
    if os.environ.get("ITILFLOW_POSTGRES_BIN"):
        candidates.append(Path(os.environ["ITILFLOW_POSTGRES_BIN"]))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.isdigit()]
        candidates += [p / "bin" for p in sorted(versions, key=lambda p: int(p.name), reverse=True)]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


@dataclass
class PostgresServer:
    bin_dir: Path
    directory: Path
    port: int
    host: str = "127.0.0.1"
    os_user: str | None = None  # set when we are root and run the server as another user

    def url(self, database: str, driver: str = "psycopg") -> str:
        return f"postgresql+{driver}://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres"):  # -> psycopg.Connection
        import psycopg

        return psycopg.connect(
            host=self.host, port=self.port, user=SUPERUSER, dbname=database, autocommit=True
        )

    def create_database(self, name: str, template: str | None = None) -> None:
        from psycopg import sql

        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self.connect() as conn:
            conn.execute(statement)

    def drop_database(self, name: str) -> None:
        """Drop it even while clients are still connected (their sessions are ended)."""
        from psycopg import sql

        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _run(self, *args: str, timeout: float = 120) -> None:
        result = subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            user=self.os_user,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.directory,
        )
        if result.returncode != 0:
            raise PostgresError(
                f"{' '.join(args[:2])} failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\n{self.log()[-3000:]}"
            )

    def start(self) -> None:
        data = str(self.directory / "data")
        self._run(
            "initdb", "-D", data, "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-locale",
            "--no-sync",
        )  # fmt: skip
        options = {**SERVER_OPTIONS, "port": str(self.port), "unix_socket_directories": ""}
        self._run(
            "pg_ctl", "-D", data, "-l", str(self.directory / "server.log"), "-w", "-t", "60",
            "-o", " ".join(f"-c {name}={value}" for name, value in options.items()), "start",
        )  # fmt: skip

    def stop(self) -> None:
        # The data is thrown away: no need for a clean shutdown checkpoint.
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "-w", "stop")


def _server_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` OS user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise PostgresUnavailable(
            "running as root and there is no `postgres` OS user to run the server as "
            "(Debian's postgresql package creates it)"
        ) from None
    return SUPERUSER


def require_postgres() -> tuple[Path, str | None]:
    """The binaries' folder and the OS user to run the server as; PostgresUnavailable if not."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        raise PostgresUnavailable(INSTALL_HINT)
    return bin_dir, _server_user()


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A fresh cluster on a free loopback port, stopped and deleted at the end."""
    bin_dir, os_user = require_postgres()
    # Not under pytest's tmp_path: its folders are private to us, the server's user must enter.
    directory = Path(tempfile.mkdtemp(prefix="itilflow-pg-"))
    if os_user:
        shutil.chown(directory, user=os_user)
    server = PostgresServer(bin_dir=bin_dir, directory=directory, port=free_port(), os_user=os_user)
    try:
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """`running_postgres()` for a fixture: skip when PostgreSQL is missing, fail in CI."""
    try:
        require_postgres()
    except PostgresUnavailable as exc:
        if in_ci():
            pytest.fail(f"CI needs PostgreSQL for these tests: {exc}", pytrace=False)
        pytest.skip(str(exc))
    with running_postgres() as server:
        yield server


@contextmanager
def prefect_harness_on(database_url: str, startup_timeout: int = 120) -> Iterator[None]:
    """Prefect's `prefect_test_harness`, with the server's database at `database_url`
    (`postgresql+asyncpg://...`) instead of a temporary SQLite file."""
    import prefect.settings
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.server.database.dependencies import temporary_database_interface
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )
    from prefect.testing.utilities import _find_available_port

    with temporary_database_interface():
        with temporary_settings(updates={PREFECT_SERVER_DATABASE_CONNECTION_URL: database_url}):
            server = SubprocessASGIServer(port=_find_available_port())
            # As the harness does: runs that look for "the" ephemeral server find this one.
            previous = SubprocessASGIServer._instances.get(None)
            SubprocessASGIServer._instances[None] = server
            try:
                server.start(timeout=startup_timeout)
                with (
                    temporary_settings(updates={PREFECT_API_URL: server.api_url}),
                    prefect.context._temporary_global_settings_context(
                        prefect.context.get_settings_context()
                    ),
                ):
                    yield
                    _drain_prefect_workers()
            finally:
                server.stop()
                if previous is not None:
                    SubprocessASGIServer._instances[None] = previous
                else:
                    SubprocessASGIServer._instances.pop(None, None)


def _drain_prefect_workers() -> None:
    """Send the last logs and events before the server stops (as prefect_test_harness does)."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        try:
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        except RuntimeError:
            pass  # the log worker never started
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    run_coro_as_sync(drain())
