"""One writer thread per gateway process, with group commit.

SQLite has one writer at a time anyway; 40 worker threads each opening a transaction only queue
on its lock and hand the GIL around (bench/README.md). Here the requests of a kind hand their
work to one thread and wait for it without holding a worker thread. The work that arrives while
a transaction commits joins the next transaction, so under load one commit serves many requests;
each request still hears back only after its own rows are committed.

A failed group is rolled back and its items are tried again one transaction each, so one bad
item fails alone; an IntegrityError (a concurrent transaction stored the same unique key) first
retries the whole group, whose work then reads what the other one stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

Item = TypeVar("Item")
Result = TypeVar("Result")

log = logging.getLogger(__name__)

# Retries of a whole group after an IntegrityError, before its items are tried one by one.
_INTEGRITY_RETRIES = 2


class GroupWriter(Generic[Item, Result]):
    """Runs `write(session, items) -> results` (one result per item, in order) for groups of
    submitted items, one transaction per group, on one thread.

    `size_of` weighs an item (e.g. its number of alerts); a group stops growing at `max_group`
    so that one transaction stays short. The thread starts with the first item and stops at
    close(), after the items already queued are written.
    """

    def __init__(
        self,
        engine: Engine,
        write: Callable[[Session, Sequence[Item]], list[Result]],
        *,
        name: str,
        size_of: Callable[[Item], int] = lambda _: 1,
        max_group: int = 1000,
    ) -> None:
        self._engine = engine
        self._write = write
        self._size_of = size_of
        self._max_group = max_group
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Item, Future[Result]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        # An item left over when a group was full: it opens the next group.
        self._carried: tuple[Item, Future[Result]] | None = None
        self.groups_committed = 0

    def submit(self, item: Item) -> Future[Result]:
        """Queue `item`; the future resolves once its group is committed, or fails with the
        error its own transaction met."""
        future: Future[Result] = Future()
        with self._start_lock:
            if self._closed:
                raise RuntimeError(f"{self._name} writer is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"{self._name}-writer", daemon=True
                )
                self._thread.start()
            self._queue.put((item, future))
        return future

    async def awrite(self, item: Item) -> Result:
        """Submit `item` and wait for its commit without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(item))

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread."""
        with self._start_lock:
            self._closed = True
            thread = self._thread
            if thread is None:
                return
            self._queue.put(None)
        thread.join(timeout)

    # ------------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        while True:
            group, stop = self._next_group()
            if group:
                self._write_group(group)
            if stop:
                return

    def _next_group(self) -> tuple[list[tuple[Item, Future[Result]]], bool]:
        first = self._carried or self._queue.get()
        self._carried = None
        if first is None:
            return [], True
        group = [first]
        size = self._size_of(first[0])
        while size < self._max_group:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                break
            if entry is None:
                return group, True
            entry_size = self._size_of(entry[0])
            if size + entry_size > self._max_group:
                self._carried = entry
                break
            group.append(entry)
            size += entry_size
        return group, False

    def _write_group(self, group: list[tuple[Item, Future[Result]]]) -> None:
        # A caller that gave up (cancelled) still gets its item stored: it may be resent, and
        # the dedup keys make that harmless.
        try:
            results = self._with_retries([item for item, _ in group])
        except Exception as exc:
            if len(group) == 1:
                _fail(group[0][1], exc)
                return
            log.debug("%s: a group of %d failed, writing each alone", self._name, len(group))
            for item, future in group:
                try:
                    [result] = self._with_retries([item])
                except Exception as alone:
                    _fail(future, alone)
                else:
                    _resolve(future, result)
            return
        for (_, future), result in zip(group, results, strict=True):
            _resolve(future, result)

    def _with_retries(self, items: Sequence[Item]) -> list[Result]:
        for _ in range(_INTEGRITY_RETRIES):
            try:
                return self._transaction(items)
            except IntegrityError:
                # Another transaction stored one of the same unique keys first: look again.
                continue
        return self._transaction(items)

    def _transaction(self, items: Sequence[Item]) -> list[Result]:
        with Session(self._engine, expire_on_commit=False) as session:
            try:
                results = self._write(session, items)
                session.commit()
            except BaseException:
                session.rollback()
                raise
        self.groups_committed += 1
        return results


def _resolve(future: Future[Result], result: Result) -> None:
    with contextlib.suppress(InvalidStateError):  # cancelled by a caller that went away
        future.set_result(result)


def _fail(future: Future[Any], error: BaseException) -> None:
    with contextlib.suppress(InvalidStateError):
        future.set_exception(error)
