"""One patrol inspection over 200 targets: wall time and peak memory, next to the same checks
run one after another.

    .venv/bin/python bench/inspection.py [--targets 200] [--node 10] [--tcp 10] [--servers 4]

Starts real peers as child processes on free loopback ports: `--servers` HTTP servers
(`python -m http.server`), one Debian node_exporter (default collectors). The targets are
`--node` node_exporter scrapes (each two scrapes 2 s apart, for CPU), `--tcp` TCP connects and
HTTP GETs for the rest, spread over the HTTP servers. Prints:

- the checks alone (`inspect_group`, no engine): concurrently (the group's concurrency, 50), and
  one after another (concurrency 1);
- the whole flow run `patrol_inspection` on a Prefect test server and a fresh SQLite database:
  checks, storing 200+ results, incidents, the table artifact;
- peak memory: this process's max RSS (the Prefect client included; the test server is another
  process) and tracemalloc's peak of Python allocations during a concurrent checks-only run.

Goal (issue 4): the run under 30 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout}s")


def start_peers(workdir: Path, servers: int) -> tuple[list[subprocess.Popen], list[int], int]:
    procs: list[subprocess.Popen] = []
    (workdir / "www").mkdir()
    (workdir / "www" / "health").write_text("OK\n")
    http_ports = []
    for _ in range(servers):
        port = free_port()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                cwd=workdir / "www",
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        http_ports.append(port)
    if not NODE_EXPORTER:
        raise SystemExit("prometheus-node-exporter is not installed (.ci/install-test-deps.sh)")
    node_port = free_port()
    procs.append(
        subprocess.Popen(
            [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{node_port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    for port in http_ports:
        wait_http(f"http://127.0.0.1:{port}/health")
    wait_http(f"http://127.0.0.1:{node_port}/metrics")
    return procs, http_ports, node_port


def policy(total: int, nodes: int, tcps: int, http_ports: list[int], node_port: int) -> dict:
    targets: dict[str, dict] = {}
    for index in range(nodes):
        node = {"type": "node_exporter", "url": f"http://127.0.0.1:{node_port}/metrics"}
        targets[f"node-{index:03d}"] = {"checks": [node]}
    for index in range(tcps):
        port = http_ports[index % len(http_ports)]
        targets[f"tcp-{index:03d}"] = {
            "checks": [{"type": "tcp", "host": "127.0.0.1", "port": port}]
        }
    for index in range(total - nodes - tcps):
        port = http_ports[index % len(http_ports)]
        url = f"http://127.0.0.1:{port}/health"
        targets[f"web-{index:03d}"] = {
            "checks": [{"type": "http", "url": url, "expect_text": "OK"}]
        }
    # Thresholds off: this machine's own CPU and disks must not open incidents in a benchmark.
    quiet = {"cpu_percent": {}, "memory_percent": {}, "filesystem_percent": {}}
    return {
        "thresholds": {**quiet, "load_per_core": {}, "failed_units": {}},
        "groups": {"bench": {"schedule": "*/5 * * * *", "targets": targets}},
    }


def count(results: list[dict]) -> str:
    statuses = {}
    for result in results:
        statuses[result["status"]] = statuses.get(result["status"], 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))


async def checks_only(inspection, concurrency: int | None) -> tuple[float, float, list[dict]]:
    from itilflow.tasks.inspection.run_inspection_checks import inspect_group

    cpu, wall = time.process_time(), time.perf_counter()
    results = await inspect_group(
        inspection, inspection.groups["bench"], {}, concurrency=concurrency
    )
    return time.perf_counter() - wall, time.process_time() - cpu, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--node", type=int, default=10)
    parser.add_argument("--tcp", type=int, default=10)
    parser.add_argument("--servers", type=int, default=4)
    parser.add_argument("--skip-sequential", action="store_true")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="itilflow-bench-inspection-"))
    procs, http_ports, node_port = start_peers(workdir, args.servers)
    try:
        run(args, workdir, http_ports, node_port)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, workdir: Path, http_ports: list[int], node_port: int) -> None:
    from itilflow.policies import default_policy_dir
    from itilflow.policies.inspection import InspectionPolicy
    from itilflow.policies.loader import FILES

    spec = policy(args.targets, args.node, args.tcp, http_ports, node_port)
    inspection = InspectionPolicy.model_validate(spec)
    http = args.targets - args.node - args.tcp
    print(
        f"{args.targets} targets: {http} HTTP on {args.servers} servers, {args.tcp} TCP, "
        f"{args.node} node_exporter (2 scrapes 2 s apart each); {os.cpu_count()} cores"
    )

    wall, cpu, results = asyncio.run(checks_only(inspection, None))
    print(
        f"checks, concurrent (50 at once):  {wall:6.2f} s wall, {cpu:5.2f} s CPU, "
        f"{len(results)} results: {count(results)}"
    )
    tracemalloc.start()
    asyncio.run(checks_only(inspection, None))
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    if not args.skip_sequential:
        wall, cpu, results = asyncio.run(checks_only(inspection, 1))
        print(
            f"checks, one after another:        {wall:6.2f} s wall, {cpu:5.2f} s CPU, "
            f"{len(results)} results: {count(results)}"
        )

    # The whole flow run on a Prefect test server, with a fresh database.
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from prefect.testing.utilities import prefect_test_harness

    from itilflow import runtime
    from itilflow.flows.inspection import patrol_inspection
    from itilflow.settings import Settings

    policy_dir = workdir / "policies"
    policy_dir.mkdir()
    for filename, _ in FILES.values():
        text = default_policy_dir().joinpath(filename).read_text(encoding="utf-8")
        (policy_dir / filename).write_text(text, encoding="utf-8")
    (policy_dir / "inspection.yaml").write_text(yaml.safe_dump(spec))
    settings = Settings(data_dir=workdir / "data", policy_dir=policy_dir)
    from itilflow.models import create_db, get_engine

    create_db(get_engine(settings.database_url))  # as `itilflow db upgrade` does
    runtime.configure(settings)
    runtime.runtime().engine  # noqa: B018 (open the database outside the timing)

    with prefect_test_harness(server_startup_timeout=120):
        for attempt in (1, 2):
            cpu, wall = time.process_time(), time.perf_counter()
            state = asyncio.run(patrol_inspection(group="bench", return_state=True))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            summary = state.result() if state.is_completed() else state.message
            print(
                f"flow run patrol_inspection #{attempt}:     {wall:6.2f} s wall, {cpu:5.2f} s CPU "
                f"(this process), {state.type.value}: {summary}"
            )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: max RSS {rss:.0f} MB (whole process, Prefect client included)")
    print(f"             tracemalloc peak {traced_peak / 2**20:.1f} MB during the checks alone")


if __name__ == "__main__":
    main()
