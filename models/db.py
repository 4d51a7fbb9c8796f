"""Engine, sessions and schema creation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Session, create_engine


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always hands back aware datetimes (SQLite keeps no time zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the gateway write while the runner reads; busy_timeout turns "database is locked"
    # into a short wait instead of an error. The driver's own transaction handling is switched
    # off so that _begin_immediate decides how transactions start.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class _WriterQueue:
    """One SQLite transaction at a time per process, queued in order on a lock.

    A deferred transaction that reads and then writes cannot wait for SQLite's write lock (it
    answers "database is locked" at once), so transactions BEGIN IMMEDIATE. Left to SQLite, the
    threads waiting for that lock poll it with sleeps of up to 100 ms: under load most of the
    gateway's time went there (bench/intake.py). A lock in the process hands the database over
    at once; SQLite's busy timeout still arbitrates between processes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def begin(self, connection: Any) -> None:
        # The timeout keeps a thread that holds one transaction and opens a second from waiting
        # on itself for ever; it then falls back to SQLite's own waiting.
        if self._lock.acquire(timeout=30):
            connection.info["itilflow_writer"] = True
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    def end(self, connection: Any) -> None:
        if connection.info.pop("itilflow_writer", False):
            self._lock.release()

    def checkin(self, _dbapi_connection: Any, record: Any) -> None:
        # A connection returned to the pool without a commit or rollback event (closed on an
        # error) must not keep the lock: the pool record shares its info with the connection.
        if record.info.pop("itilflow_writer", False):
            self._lock.release()


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=10
        )
        event.listen(engine, "connect", _tune_sqlite)
        writers = _WriterQueue()
        event.listen(engine, "begin", writers.begin)
        event.listen(engine, "commit", writers.end)
        event.listen(engine, "rollback", writers.end)
        event.listen(engine, "checkin", writers.checkin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def create_db(engine: Engine) -> None:
    """Make or upgrade the schema to the code's revision: `upgrade_database` (for tests, benches
    and the commands that own the schema; the other processes only check it)."""
    from itilflow.models.migrations import upgrade_database

    upgrade_database(engine)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
