"""`itilflow db copy` of a large SQLite installation into PostgreSQL: rows per second.

    .venv/bin/python bench/db_copy.py [--incidents N]

Writes the monthly report's history (bench/report.py: N incidents, default 20,000, with about 6
timeline entries each, 2,000 changes, 200 problems, 20,000 check results) into a fresh SQLite
database, starts a throwaway PostgreSQL server (tests/support/postgres.py: Debian's
postgresql, durability off), copies the installation there with `copy_database` (what the
command runs) and prints the rows, the time, and the rows per second. Durability is off on the
throwaway server, so a real one (fsync on, over a network) is slower; the copy is one
transaction, so it commits once.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import generate, generate_processes  # noqa: E402  (bench/report.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--incidents", type=int, default=20_000)
    args = parser.parse_args()

    from itilflow.models import get_engine
    from itilflow.models.copy import copy_database
    from tests.support.postgres import postgres_server

    with tempfile.TemporaryDirectory(prefix="itilflow-bench-copy-") as folder:
        database = Path(folder) / "itilflow.db"
        started = time.perf_counter()
        timeline = generate(database, args.incidents)
        generate_processes(database, args.incidents // 10, args.incidents // 100, args.incidents)
        print(
            f"generated {args.incidents:,} incidents, {timeline:,} timeline rows and the rest in "
            f"{time.perf_counter() - started:.1f} s ({database.stat().st_size / 2**20:.0f} MB)"
        )
        with postgres_server() as server:
            server.create_database("itilflow_copy")
            source = get_engine(f"sqlite:///{database}")
            target = get_engine(server.url("itilflow_copy"))
            started = time.perf_counter()
            copied = copy_database(source, target, say=lambda _line: None)
            seconds = time.perf_counter() - started
            rows = sum(entry.target for entry in copied)
            for entry in sorted(copied, key=lambda entry: -entry.target)[:5]:
                print(f"  {entry.name:<20} {entry.target:>9,} rows")
            print(
                f"copied {rows:,} rows in {len(copied)} tables to PostgreSQL in {seconds:.1f} s "
                f"({rows / seconds:,.0f} rows/s), counts equal"
            )
            target.dispose()


if __name__ == "__main__":
    main()
