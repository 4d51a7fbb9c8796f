"""What a tag on a task run costs: a batch's run carries a tag per record it handles
(dispatch/runner.py run_tags), and a task run that inherits tags asks the server for their
concurrency slots first, a round trip per task run (flows/naming.py steps_untagged keeps a
batch's steps untagged for that reason).

    .venv/bin/python bench/task_tags.py [--tasks 20] [--rounds 5]

Starts a Prefect server (SQLite, as `itilflow up` does) and runs, alternately, one flow of
`--tasks` trivial task runs three ways: untagged, its run tagged with 80 records and its steps
untagged (what the runner does), and steps inheriting the 80 tags. Prints the median seconds
per flow run and per task run of each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from _common import PrefectServer, banner, temp_dir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    server = PrefectServer(temp_dir("task-tags") / "prefect").start()
    os.environ["PREFECT_API_URL"] = server.api_url
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"

    from prefect import flow, tags, task
    from prefect.context import TagsContext

    @task
    def step(index: int) -> int:
        return index

    @flow
    def batch(count: int, untagged_steps: bool) -> None:
        if untagged_steps:
            with TagsContext(current_tags=set()):
                for index in range(count):
                    step(index)
        else:
            for index in range(count):
                step(index)

    records = [f"incident:INC-{n:06d}" for n in range(1, 81)]
    ways = {
        "no tags": (lambda: batch(args.tasks, False)),
        "run tagged, steps untagged": (lambda: _tagged(tags, records, batch, args.tasks, True)),
        "run and steps tagged": (lambda: _tagged(tags, records, batch, args.tasks, False)),
    }
    for way in ways.values():  # warm up: the first run registers the flow and the task
        way()
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, way in ways.items():
            started = time.perf_counter()
            way()
            seconds[name].append(time.perf_counter() - started)
    banner(f"{args.tasks} task runs per flow run, {args.rounds} rounds (median)")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"{name:28} {median:6.2f} s a run   {median / args.tasks * 1000:6.1f} ms a task run")


def _tagged(tags, records, batch, count, untagged_steps) -> None:  # noqa: ANN001
    with tags(*records):
        batch(count, untagged_steps)


if __name__ == "__main__":
    main()
