"""The gateway's writer thread: items that wait while a transaction runs share the next one,
each caller hears back only after its own commit, and a failing item fails alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session

from itilflow.gateway.writer import GroupWriter
from itilflow.models import get_engine


class Names:
    """A write function over a table of unique names; `block` holds its group until released,
    `bad` fails with a database error."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.groups: list[list[str]] = []

    def __call__(self, session: Session, items: Sequence[str]) -> list[str]:
        self.groups.append(list(items))
        for name in items:
            if name == "block":
                self.entered.set()
                assert self.release.wait(10)
            if name == "bad":
                session.execute(text("INSERT INTO no_such_table VALUES (1)"))
            session.execute(text("INSERT INTO name (name) VALUES (:name)"), {"name": name})
        return [f"stored {name}" for name in items]


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = get_engine(f"sqlite:///{tmp_path / 'writer.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE name (name TEXT UNIQUE NOT NULL)"))
    return engine


@pytest.fixture
def names() -> Names:
    return Names()


@pytest.fixture
def writer(engine: Engine, names: Names) -> Iterator[GroupWriter[str, str]]:
    writer: GroupWriter[str, str] = GroupWriter(engine, names, name="test", max_group=100)
    yield writer
    names.release.set()
    writer.close()


def stored(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return sorted(connection.execute(text("SELECT name FROM name")).scalars())


def hold_the_writer(writer: GroupWriter[str, str], names: Names) -> Future[str]:
    """Start a transaction that waits for `names.release`: what is submitted meanwhile queues."""
    blocked = writer.submit("block")
    assert names.entered.wait(10)
    return blocked


def test_items_that_wait_share_one_transaction(writer, names, engine):
    blocked = hold_the_writer(writer, names)
    waiting = [writer.submit(name) for name in ("a", "b", "c")]
    assert not any(future.done() for future in waiting)
    names.release.set()
    assert [future.result(10) for future in waiting] == ["stored a", "stored b", "stored c"]
    assert blocked.result(10) == "stored block"
    assert names.groups == [["block"], ["a", "b", "c"]]
    assert writer.groups_committed == 2
    assert stored(engine) == ["a", "b", "block", "c"]


def test_a_failing_item_fails_alone_and_stores_nothing(writer, names, engine):
    hold_the_writer(writer, names)
    good_a, bad, good_b = (writer.submit(name) for name in ("a", "bad", "b"))
    names.release.set()
    assert (good_a.result(10), good_b.result(10)) == ("stored a", "stored b")
    with pytest.raises(OperationalError, match="no_such_table"):
        bad.result(10)
    # The group was rolled back, then each item had its own transaction.
    assert names.groups == [["block"], ["a", "bad", "b"], ["a"], ["bad"], ["b"]]
    assert stored(engine) == ["a", "b", "block"]


def test_an_integrity_error_is_retried_then_reported(writer, names, engine):
    assert writer.submit("a").result(10) == "stored a"
    with pytest.raises(IntegrityError):
        writer.submit("a").result(10)
    # The group of one was tried three times (a concurrent writer may have stored the key).
    assert names.groups == [["a"]] + [["a"]] * 3
    assert stored(engine) == ["a"]


def test_a_group_stops_growing_at_its_size_limit(engine, names):
    writer: GroupWriter[str, str] = GroupWriter(
        engine,
        names,
        name="sized",
        size_of=lambda name: 60 if name != "block" else 1,
        max_group=100,
    )
    try:
        hold_the_writer(writer, names)
        futures = [writer.submit(name) for name in ("a", "b", "c")]
        names.release.set()
        assert [future.result(10) for future in futures] == ["stored a", "stored b", "stored c"]
        assert names.groups == [["block"], ["a"], ["b"], ["c"]]
    finally:
        names.release.set()
        writer.close()


def test_close_writes_what_is_queued_then_refuses(writer, names, engine):
    hold_the_writer(writer, names)
    queued = [writer.submit(name) for name in ("a", "b")]
    closing = threading.Thread(target=writer.close)
    closing.start()
    names.release.set()
    closing.join(10)
    assert [future.result(0) for future in queued] == ["stored a", "stored b"]
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit("c")
    assert stored(engine) == ["a", "b", "block"]
