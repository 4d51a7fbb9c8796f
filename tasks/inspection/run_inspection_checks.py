"""Check every target of a group at once; each check has its own timeout and retries.

One task for the whole group, the checks inside it on asyncio: 200 Prefect task runs cost 4 to
20 s of engine bookkeeping on a 2-core host (bench/inspection.py), more than the checks
themselves. A check that gets no answer (refused, timed out, unreachable) is tried again
`retries` times, `retry_delay` apart, and then becomes an `error` result: it never fails the task,
so one dead target cannot fail the run. A crossed threshold is an answer and is not retried.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

import httpx
from cryptography import x509
from prefect import task
from sqlalchemy.engine import Engine
from sqlmodel import Session

from itilflow import clock
from itilflow.models import get_results_since
from itilflow.policies.inspection import (
    Check,
    HttpCheck,
    InspectionPolicy,
    Levels,
    LowLevels,
    NodeExporterCheck,
    PromqlCheck,
    TargetGroup,
    TcpCheck,
    TlsCheck,
    check_name,
    judge,
    judge_low,
    worst,
)
from itilflow.runtime import runtime
from itilflow.tasks.inspection.check_results import (
    Clients,
    FillHistory,
    NoAnswer,
    Result,
    check_result,
    describe_failure,
)
from itilflow.tasks.inspection.node_exporter import probe_node


@task(name="run-inspection-checks")
async def run_inspection_checks(group: str) -> list[Result]:
    """Every check of every target in `group`, concurrently; one result per check (a
    node_exporter check gives one per metric, and one for the scrape itself)."""
    rt = runtime()
    policy = rt.policies.inspection
    spec = policy.group(group)
    history = await asyncio.to_thread(load_fill_history, rt.engine, policy, spec)
    return await inspect_group(policy, spec, history)


async def inspect_group(
    policy: InspectionPolicy,
    group: TargetGroup,
    history: FillHistory | None = None,
    *,
    concurrency: int | None = None,
) -> list[Result]:
    """The checks themselves, without the engine (the bench runs them with concurrency=1)."""
    limit = asyncio.Semaphore(concurrency or group.concurrency)
    clients = Clients(concurrency or group.concurrency)
    try:

        async def one(target: str, check: Check) -> list[Result]:
            async with limit:
                return await run_check(policy, target, check, clients, history or {})

        jobs = [
            one(name, check) for name, target in group.targets.items() for check in target.checks
        ]
        batches = await asyncio.gather(*jobs)
    finally:
        await clients.close()
    return [result for batch in batches for result in batch]


async def run_check(
    policy: InspectionPolicy,
    target: str,
    check: Check,
    clients: Clients,
    history: FillHistory,
) -> list[Result]:
    """One check with its retries; never raises."""
    name = check_name(check)
    timeout = policy.timeout_for(check).total_seconds()
    probe: Callable[[], Awaitable[list[Result]]]
    if isinstance(check, NodeExporterCheck):
        timeout += check.sample_interval.total_seconds()
        probe = lambda: probe_node(target, check, policy.thresholds_for(check), clients, history)  # noqa: E731
    elif isinstance(check, PromqlCheck):
        probe = lambda: _promql(target, check, clients)  # noqa: E731
    elif isinstance(check, HttpCheck):
        probe = lambda: _http(target, check, clients)  # noqa: E731
    elif isinstance(check, TcpCheck):
        probe = lambda: _tcp(target, check)  # noqa: E731
    else:
        probe = lambda: _tls(target, check)  # noqa: E731
    retries = policy.retries_for(check)
    problem = "no answer"
    for attempt in range(1, retries + 2):
        try:
            async with asyncio.timeout(timeout):
                results = await probe()
            for result in results:
                result["attempts"] = attempt
            return results
        except TimeoutError:
            problem = f"no answer within {timeout:g}s"
        except (NoAnswer, OSError, httpx.TransportError) as exc:
            problem = describe_failure(exc)
        except Exception as exc:  # noqa: BLE001 (a bad answer or a bug: recorded, not raised)
            return [
                check_result(target, name, check.type, "error", message=f"check failed: {exc!r}")
            ]
        if attempt <= retries:
            await asyncio.sleep(policy.retry_delay.total_seconds())
    result = check_result(target, name, check.type, "error", message=problem)
    result["attempts"] = retries + 1
    return [result]


def load_fill_history(engine: Engine, policy: InspectionPolicy, group: TargetGroup) -> FillHistory:
    """Earlier filesystem results of the group's node_exporter checks within their fill_window."""
    windows = {
        (target, f"{check_name(check)}.filesystem"): policy.thresholds_for(check).fill_window
        for target, spec in group.targets.items()
        for check in spec.checks
        if isinstance(check, NodeExporterCheck) and "filesystem_fill" in check.metrics
    }
    if not windows:
        return {}
    now = clock.now()
    with Session(engine) as session:
        rows = get_results_since(
            session=session,
            targets={target for target, _ in windows},
            check_suffix=".filesystem",
            since=now - max(windows.values()),
        )
    history: FillHistory = defaultdict(list)
    for row in rows:
        key = (row.target, row.check_name)
        if key in windows and row.at >= now - windows[key] and row.details:
            history[key].append((row.at, {k: float(v) for k, v in row.details.items()}))
    return dict(history)


# --- probes --------------------------------------------------------------------------------------


async def _http(target: str, check: HttpCheck, clients: Clients) -> list[Result]:
    started = time.perf_counter()
    response = await clients.get(check.verify, check.ca_file).get(check.url)
    body = response.text
    latency = time.perf_counter() - started
    status, message = "ok", f"HTTP {response.status_code} in {latency * 1000:.0f} ms"
    if response.status_code != check.status:
        status, message = "critical", f"HTTP {response.status_code}, expected {check.status}"
    elif check.expect_text is not None and check.expect_text not in body:
        status, message = "critical", f"{check.expect_text!r} not in the response"
    elif latency > check.max_latency.total_seconds():
        status = "warning"
        message += f", over {check.max_latency.total_seconds():g}s"
    return [
        check_result(
            target, check_name(check), "http", status, round(latency, 4), "s", message=message
        )
    ]


async def _tcp(target: str, check: TcpCheck) -> list[Result]:
    started = time.perf_counter()
    _, writer = await asyncio.open_connection(check.host, check.port)
    elapsed = time.perf_counter() - started
    writer.close()
    await writer.wait_closed()
    message = f"{check.host}:{check.port} open ({elapsed * 1000:.0f} ms)"
    return [check_result(target, check_name(check), "tcp", "ok", round(elapsed, 4), "s", message)]


async def _tls(target: str, check: TlsCheck) -> list[Result]:
    name = check_name(check)
    untrusted = None
    try:
        der = await _peer_certificate(check, verify=check.verify)
    except ssl.SSLCertVerificationError as exc:
        untrusted = exc.verify_message or str(exc)
        der = await _peer_certificate(check, verify=False)
    certificate = x509.load_der_x509_certificate(der)
    expires = certificate.not_valid_after_utc
    days = (expires - clock.now()).total_seconds() / 86400
    status = judge_low(days, check.days_before_expiry)
    message = f"certificate expires {expires:%Y-%m-%d %H:%M} UTC, in {days:.1f} days"
    if days <= 0:
        status, message = "critical", f"certificate expired {expires:%Y-%m-%d %H:%M} UTC"
    if untrusted:
        status, message = "critical", f"certificate not trusted ({untrusted}); {message}"
    return [check_result(target, name, "tls", status, round(days, 3), "d", message)]


async def _peer_certificate(check: TlsCheck, *, verify: bool) -> bytes:
    if verify:
        context = ssl.create_default_context(cafile=check.ca_file)
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection(
        check.host, check.port, ssl=context, server_hostname=check.server_name or check.host
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass
    if not der:
        raise NoAnswer("the server sent no certificate")
    return bytes(der)


async def _promql(target: str, check: PromqlCheck, clients: Clients) -> list[Result]:
    name = check_name(check)
    response = await clients.get().get(
        f"{check.url.rstrip('/')}/api/v1/query", params={"query": check.query}
    )
    if response.status_code >= 500:
        raise NoAnswer(f"Prometheus answered HTTP {response.status_code}")
    payload = response.json()
    if payload.get("status") != "success":
        error = payload.get("error") or f"HTTP {response.status_code}"
        return [check_result(target, name, "promql", "error", message=f"query refused: {error}")]
    data = payload["data"]
    if data["resultType"] == "scalar":
        series = [({}, float(data["result"][1]))]
    elif data["resultType"] == "vector":
        series = [(item["metric"], float(item["value"][1])) for item in data["result"]]
    else:
        return [
            check_result(
                target,
                name,
                "promql",
                "error",
                message=f"expected an instant vector or scalar, got a {data['resultType']}",
            )
        ]
    if not series:
        return [check_result(target, name, "promql", check.on_empty, message="no series")]

    def status_of(value: float) -> str:
        if check.direction == "above":
            return judge(value, Levels(warning=check.warning, critical=check.critical))
        return judge_low(value, LowLevels(warning=check.warning, critical=check.critical))

    judged = [(status_of(value), value, labels) for labels, value in series]
    pick = max if check.direction == "above" else min
    status = worst([s for s, _, _ in judged])
    value, labels = pick(((v, labels) for _, v, labels in judged), key=lambda item: item[0])
    where = ",".join(f"{k}={v}" for k, v in labels.items() if k != "__name__") or "value"
    message = f"{where}: {value:g}{check.unit}" + (
        f" (worst of {len(series)} series)" if len(series) > 1 else ""
    )
    details = {
        (",".join(f"{k}={v}" for k, v in lb.items()) or "value"): v for _, v, lb in judged[:50]
    }
    return [check_result(target, name, "promql", status, value, check.unit, message, details)]


__all__ = ["inspect_group", "run_inspection_checks"]
