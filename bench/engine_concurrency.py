"""How many in-process flow runs per second the engine gives, one at a time vs concurrently.

    .venv/bin/python bench/engine_concurrency.py [--quick] [--postgres | --database-url URL]

Starts a Prefect server (`prefect server start`; SQLite, or PostgreSQL with --postgres: a
throwaway cluster from tests/support/postgres.py, or --database-url postgresql+asyncpg://...
of an empty database) and runs, in this process as the runner does, trivial async flows (no
task; and with 3 small sync tasks): N one after the other, then N at once with asyncio.gather
for several N. Prints flow runs/s, the CPU the server and this
process used, and how many API calls the Prefect client had to retry after a 503 (the server
answers 503 when its SQLite reports "database is locked"; the client then backs off ~2, 4, 8 s).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from contextlib import ExitStack

import _common
from _common import PrefectServer, banner, cpu_seconds, temp_dir


class RetryCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retryable status code" in record.getMessage():
            self.count += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--postgres", action="store_true", help="the server on a throwaway PostgreSQL cluster"
    )
    where.add_argument("--database-url", help="the server's database, postgresql+asyncpg://...")
    args = parser.parse_args()
    sizes = (2, 8) if args.quick else (2, 4, 8, 16)
    n_seq = 8 if args.quick else 16

    with ExitStack() as stack:
        home = temp_dir("engine") / "prefect"
        database_url = args.database_url
        if args.postgres:
            from tests.support.postgres import running_postgres

            cluster = stack.enter_context(running_postgres())
            cluster.create_database("prefect")
            database_url = cluster.url("prefect", driver="asyncpg")
        server = PrefectServer(home, database_url)
        server.start()
        where = "PostgreSQL" if database_url else "SQLite"
        print(f"Prefect server on {where} answered /api/health after {server.startup_seconds:.1f}s")
        try:
            measure_engine(server, sizes, n_seq)
        finally:
            # Before the cluster goes: a server that loses its database mid-run logs a storm.
            _common.kill_children()


def measure_engine(server: PrefectServer, sizes: tuple[int, ...], n_seq: int) -> None:
    os.environ.update(server.client_env())
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"

    from prefect import flow, task

    retries = RetryCounter()
    client_log = logging.getLogger("prefect.client")
    client_log.addHandler(retries)
    client_log.setLevel(logging.DEBUG)
    client_log.propagate = False

    @task
    def step(i: int) -> int:
        return i + 1

    @flow
    async def empty(i: int) -> int:
        return i

    @flow
    async def three_tasks(i: int) -> int:
        return step(step(step(i)))

    async def measure(fl, label: str, n: int, concurrent: bool) -> None:  # noqa: ANN001
        assert server.proc is not None
        before = (time.perf_counter(), cpu_seconds(server.proc.pid), time.process_time())
        retries.count = 0
        if concurrent:
            await asyncio.gather(*(fl(i, return_state=True) for i in range(n)))
        else:
            for i in range(n):
                await fl(i, return_state=True)
        wall = time.perf_counter() - before[0]
        server_cpu = cpu_seconds(server.proc.pid) - before[1]
        own_cpu = time.process_time() - before[2]
        print(
            f"  {label:<12} {'gather' if concurrent else 'sequential':<10} n={n:<3} "
            f"{wall:6.2f}s  {n / wall:5.1f} flow runs/s  CPU: server {server_cpu:5.2f}s, "
            f"runner {own_cpu:5.2f}s  503 retries: {retries.count}",
            flush=True,
        )

    async def run() -> None:
        await empty(-1)
        await three_tasks(-1)
        for fl, label in ((empty, "empty flow"), (three_tasks, "3 sync tasks")):
            banner(label)
            await measure(fl, label, n_seq, concurrent=False)
            for n in sizes:
                await measure(fl, label, n, concurrent=True)

    asyncio.run(run())


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted; child processes stopped", flush=True)
    finally:
        _common.kill_children()
