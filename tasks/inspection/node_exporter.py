"""The node_exporter check: one scrape (two, a sample interval apart, for the CPU), one result
for the scrape itself and one per metric: cpu, memory, filesystem, filesystem_fill (the soonest
full at the rate of earlier results), load and systemd."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from itilflow import clock
from itilflow.policies.durations import format_duration
from itilflow.policies.inspection import (
    NodeExporterCheck,
    Thresholds,
    check_name,
    judge,
    judge_low,
    seconds_until_full,
)
from itilflow.tasks.inspection.check_results import (
    Clients,
    FillHistory,
    NoAnswer,
    Result,
    check_result,
)

NODE_SAMPLES = (
    "node_cpu_seconds_total",
    "node_memory_MemAvailable_bytes",
    "node_memory_MemTotal_bytes",
    "node_filesystem_avail_bytes",
    "node_filesystem_size_bytes",
    "node_load5",
    "node_systemd_unit_state",
)


Samples = dict[str, list[tuple[dict[str, str], float]]]


async def probe_node(
    target: str,
    check: NodeExporterCheck,
    levels: Thresholds,
    clients: Clients,
    history: FillHistory,
) -> list[Result]:
    """`levels`: the policy's thresholds with the check's own overrides."""
    name = check_name(check)
    client = clients.get()
    started = time.perf_counter()
    first = await _scrape(client, check.url)
    elapsed = time.perf_counter() - started
    second = None
    if "cpu" in check.metrics:
        await asyncio.sleep(check.sample_interval.total_seconds())
        second = await _scrape(client, check.url)
    current = second or first
    results = [
        check_result(target, name, "node_exporter", "ok", round(elapsed, 4), "s", "metrics scraped")
    ]

    def add(metric: str, status: str, value: float | None, unit: str, message: str, **kw: Any):
        results.append(
            check_result(
                target, f"{name}.{metric}", "node_exporter", status, value, unit, message, **kw
            )
        )

    cores = len({labels.get("cpu") for labels, _ in current.get("node_cpu_seconds_total", [])})
    if "cpu" in check.metrics and second is not None and cores:
        busy = _cpu_percent(first, second)
        if busy is not None:
            add("cpu", judge(busy, levels.cpu_percent), round(busy, 2), "%", f"{busy:.1f}% busy")
    if "memory" in check.metrics:
        total = _one(current, "node_memory_MemTotal_bytes")
        available = _one(current, "node_memory_MemAvailable_bytes")
        if total and available is not None:
            used = 100 * (1 - available / total)
            add("memory", judge(used, levels.memory_percent), round(used, 2), "%", f"{used:.1f}%")
    filled = _filesystems(current, check.ignore_fstypes)
    if "filesystem" in check.metrics and filled:
        results.append(_filesystem_result(target, name, filled, levels))
    if "filesystem_fill" in check.metrics and filled:
        results.append(_fill_result(target, name, filled, history, levels))
    if "load" in check.metrics and cores:
        load = _one(current, "node_load5")
        if load is not None:
            per_core = load / cores
            add(
                "load",
                judge(per_core, levels.load_per_core),
                round(per_core, 3),
                "",
                f"load5 {load:g} on {cores} cores",
            )
    if "systemd" in check.metrics and "node_systemd_unit_state" in current:
        results.append(_systemd_result(target, name, current, levels))
    return results


async def _scrape(client: httpx.AsyncClient, url: str) -> Samples:
    response = await client.get(url)
    if response.status_code != 200:
        raise NoAnswer(f"{url} answered HTTP {response.status_code}")
    return parse_node_metrics(response.text)


def parse_node_metrics(text: str) -> Samples:
    """The samples the node checks read, from Prometheus' text exposition format."""
    wanted = [line for line in text.splitlines() if line.startswith(NODE_SAMPLES)]
    samples: Samples = defaultdict(list)
    for family in text_string_to_metric_families("\n".join(wanted) + "\n"):
        for sample in family.samples:
            if sample.name in NODE_SAMPLES:
                samples[sample.name].append((dict(sample.labels), float(sample.value)))
    return dict(samples)


def _one(samples: Samples, name: str) -> float | None:
    values = samples.get(name)
    return values[0][1] if values else None


def _cpu_percent(first: Samples, second: Samples) -> float | None:
    def totals(samples: Samples) -> tuple[float, float]:
        rows = samples.get("node_cpu_seconds_total", [])
        idle = sum(v for labels, v in rows if labels.get("mode") == "idle")
        return idle, sum(v for _, v in rows)

    idle1, total1 = totals(first)
    idle2, total2 = totals(second)
    if total2 - total1 <= 0:
        return None
    return max(0.0, min(100.0, 100 * (1 - (idle2 - idle1) / (total2 - total1))))


def _filesystems(samples: Samples, ignore: list[str]) -> dict[str, float]:
    sizes = {
        labels.get("mountpoint", "?"): value
        for labels, value in samples.get("node_filesystem_size_bytes", [])
        if labels.get("fstype") not in ignore and value > 0
    }
    return {
        labels.get("mountpoint", "?"): 100 * (1 - value / sizes[labels.get("mountpoint", "?")])
        for labels, value in samples.get("node_filesystem_avail_bytes", [])
        if labels.get("mountpoint", "?") in sizes
    }


def _filesystem_result(
    target: str, name: str, filled: dict[str, float], levels: Thresholds
) -> Result:
    mountpoint, used = max(filled.items(), key=lambda item: item[1])
    return check_result(
        target,
        f"{name}.filesystem",
        "node_exporter",
        judge(used, levels.filesystem_percent),
        round(used, 2),
        "%",
        f"{mountpoint} {used:.1f}% full"
        + (f" (fullest of {len(filled)})" if len(filled) > 1 else ""),
        details={mp: round(value, 3) for mp, value in filled.items()},
    )


def _fill_result(
    target: str, name: str, filled: dict[str, float], history: FillHistory, levels: Thresholds
) -> Result:
    """The soonest a filesystem fills up at the rate of its earlier results, once they span
    `fill_min_span`."""
    check = f"{name}.filesystem_fill"
    now = clock.now()
    earlier = history.get((target, f"{name}.filesystem"), [])
    predictions = {}
    span = levels.fill_min_span
    for mountpoint, used in filled.items():
        points = [(at, d[mountpoint]) for at, d in earlier if mountpoint in d]
        if not points or now - points[0][0] < span:
            continue
        seconds = seconds_until_full([*points, (now, used)])
        if seconds is not None:
            predictions[mountpoint] = seconds
    if not predictions:
        message = (
            "no filesystem is filling up"
            if any(now - at >= span for at, _ in earlier)
            else f"no prediction before results span {format_duration(span)}"
        )
        return check_result(target, check, "node_exporter", "ok", None, "h", message)
    mountpoint, seconds = min(predictions.items(), key=lambda item: item[1])
    return check_result(
        target,
        check,
        "node_exporter",
        judge_low(seconds, levels.filesystem_full_in),
        round(seconds / 3600, 2),
        "h",
        f"{mountpoint} full in {seconds / 3600:.1f} h at the rate of the last "
        f"{format_duration(levels.fill_window)}",
        details={mp: round(s / 3600, 2) for mp, s in predictions.items()},
    )


def _systemd_result(target: str, name: str, current: Samples, levels: Thresholds) -> Result:
    failed = sorted(
        labels.get("name", "?")
        for labels, value in current["node_systemd_unit_state"]
        if labels.get("state") == "failed" and value == 1
    )
    return check_result(
        target,
        f"{name}.systemd",
        "node_exporter",
        judge(len(failed), levels.failed_units),
        len(failed),
        "",
        ("failed: " + ", ".join(failed[:10])) if failed else "no failed units",
    )
