"""The idle demo stack's footprint, and `up` to ready on an existing data folder (issue 13).

    .venv/bin/python bench/footprint.py [--idle 30] [--starts 2]

Starts `itilflow up --demo` on a fresh data folder (the first start: migrations, Prefect's
database, the demo data), stops it, then starts it `--starts` times again on the same folder.
Printed for each start: the seconds to each stage line `up` prints and to "Ctrl-C stops
everything" (ready). After the last start, once it sat idle `--idle` seconds: the RSS of each
child of `up` (its whole process group: a worker's flow runs count to the worker), of `up`
itself, the total, and the CPU each used during a further `--idle` seconds.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import _common  # noqa: F401  (sys.path)
from _common import PYTHON, ROOT, banner, base_env, free_port, temp_dir

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def up_env() -> dict[str, str]:
    env = {k: v for k, v in base_env().items() if not k.startswith(("ITILFLOW_", "PREFECT_"))}
    for name in ("PREFECT", "GATEWAY", "DEMO_SMTP", "DEMO_CHAT"):
        env[f"ITILFLOW_{name}_PORT"] = str(free_port())
    return env


def start_up(data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    """`up --demo` until it says it is ready; its lines, each with the seconds since start."""
    began = time.monotonic()
    process = subprocess.Popen(
        [PYTHON, "-m", "itilflow.cli", "--data-dir", str(data_dir), "up", "--demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    said = []
    while line := process.stdout.readline():
        said.append(f"{time.monotonic() - began:6.1f} s  {line.rstrip()}")
        if "Ctrl-C stops everything" in line:
            return process, said
    raise SystemExit("itilflow up did not come up:\n" + "\n".join(said))


def stop_up(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def stat_of(pid: int) -> tuple[int, int, int] | None:
    """(parent pid, process group, CPU ticks) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields[1]), int(fields[2]), int(fields[11]) + int(fields[12])


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (FileNotFoundError, ProcessLookupError):
        return 0


def groups_of(up_pid: int) -> dict[int, list[int]]:
    """Each child of `up` with every process under it (a worker's flow runs, the Prefect
    server's own children), and `up` itself alone."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := stat_of(int(entry.name))) is not None:
            parents[int(entry.name)] = stat[0]
    found: dict[int, list[int]] = {up_pid: [up_pid]}
    for pid in parents:
        ancestor = pid
        while ancestor in parents and parents[ancestor] not in (up_pid, 0, 1):
            ancestor = parents[ancestor]
        if parents.get(ancestor) == up_pid:
            found.setdefault(ancestor, []).append(pid)
    return found


def child_names(up_pid: int) -> dict[int, str]:
    """Child pid -> what it is, from its command line."""
    names = {up_pid: "itilflow up"}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or (stat := stat_of(int(entry.name))) is None:
            continue
        if stat[0] != up_pid:
            continue
        try:
            command = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        text = " ".join(part.decode(errors="replace") for part in command)
        match = re.search(r"itilflow\.cli (\S+)|prefect_server|worker start|node_exporter", text)
        label = (match.group(1) or match.group(0)) if match else text[:40]
        names[int(entry.name)] = label.replace("prefect_server", "prefect server")
    return names


def footprint(up_pid: int, idle: float) -> None:
    names = child_names(up_pid)
    groups = groups_of(up_pid)
    ticks_before = {pid: (stat_of(pid) or (0, 0, 0))[2] for pids in groups.values() for pid in pids}
    time.sleep(idle)
    groups = groups_of(up_pid)
    total_rss = 0
    total_cpu = 0.0
    print(f"{'process':<20} {'procs':>5} {'RSS MiB':>9} {'CPU % of a core':>16}")
    for group, pids in sorted(groups.items(), key=lambda item: names.get(item[0], "")):
        rss = sum(rss_bytes(pid) for pid in pids)
        cpu = sum(
            ((stat_of(pid) or (0, 0, 0))[2] - ticks_before.get(pid, 0)) / TICKS for pid in pids
        )
        total_rss += rss
        total_cpu += cpu
        name = names.get(group, f"group {group}")
        print(f"{name:<20} {len(pids):>5} {rss / 2**20:>9.0f} {100 * cpu / idle:>16.1f}")
    print(f"{'total':<20} {'':>5} {total_rss / 2**20:>9.0f} {100 * total_cpu / idle:>16.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=30.0, help="seconds idle before, and of, CPU")
    parser.add_argument("--starts", type=int, default=2, help="starts on the existing folder")
    args = parser.parse_args()
    data_dir = temp_dir("footprint") / "data"
    env = up_env()
    for start in range(args.starts + 1):
        kind = "a fresh data folder" if start == 0 else f"the same data folder, start {start}"
        banner(f"itilflow up --demo on {kind}")
        process, said = start_up(data_dir, env)
        print("\n".join(line for line in said if " ... " in line or "up in" in line))
        print(said[-1])
        if start < args.starts:
            stop_up(process)
            continue
        banner(f"idle {args.idle:.0f} s, then RSS and CPU over {args.idle:.0f} s")
        time.sleep(args.idle)
        try:
            footprint(process.pid, args.idle)
        finally:
            stop_up(process)


if __name__ == "__main__":
    main()
