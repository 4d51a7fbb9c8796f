"""Shared helpers of the benchmarks: temp dirs, free ports, child processes that die with us,
a Prefect server, the gateway, settings and small statistics.

Not a benchmark itself. Every script puts the repository root and this folder on sys.path, so
`tests.support.*` and `itilflow.*` import as they do in the tests.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
for _path in (str(ROOT), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

PYTHON = sys.executable

ALL_TAGS = [
    "oncall-chat",
    "sms",
    "team-chat",
    "servicedesk-chat",
    "hardware-chat",
    "applications-chat",
    "network-chat",
    "dba-chat",
    "security-chat",
]

_children: list[subprocess.Popen[bytes]] = []
_tempdirs: list[Path] = []


# ---------------------------------------------------------------------------------- lifecycle


def _on_term(signum: int, _frame: Any) -> None:
    # SIGTERM behaves like Ctrl-C: unwind through the scripts' finally blocks.
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _on_term)


def kill_children() -> None:
    """Kill every child process group we started (each child runs in its own session)."""
    for proc in reversed(_children):
        kill(proc, sig=signal.SIGTERM)
    _children.clear()


def kill(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, wait: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=wait)


def _cleanup() -> None:
    kill_children()
    if os.environ.get("BENCH_KEEP") != "1":
        for path in _tempdirs:
            shutil.rmtree(path, ignore_errors=True)


atexit.register(_cleanup)


def temp_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"itilflow-bench-{prefix}-"))
    _tempdirs.append(path)
    return path


def spawn(
    args: Sequence[str], *, env: dict[str, str], log: Path, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    """A child in its own process group (so a Ctrl-C here reaches it only through us)."""
    log_file = open(log, "ab")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        list(args),
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log_file.close()
    _children.append(proc)
    return proc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> float:
    """Poll `url` until it answers 200; returns the seconds it took."""
    start = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{tail(log)}")
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"{url} not answering after {timeout}s:\n{tail(log)}")
        time.sleep(0.2)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ITILFLOW_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(BENCH)])
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def cpu_seconds(pid: int) -> float:
    """user+system CPU seconds a process and its live children have used so far (Linux /proc;
    uvicorn --workers N runs the app in children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(int(child)) for child in children)


# ---------------------------------------------------------------------------------- services


class PrefectServer:
    """`prefect server start` on a free port with its own PREFECT_HOME (SQLite)."""

    def __init__(self, home: Path, database_url: str | None = None) -> None:
        self.home = home
        self.database_url = database_url  # None: SQLite under `home`
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.log = home / "prefect-server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0

    def start(self, timeout: float = 120) -> PrefectServer:
        self.home.mkdir(parents=True, exist_ok=True)
        env = base_env() | {
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        if self.database_url:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = self.database_url
        prefect = str(Path(PYTHON).parent / "prefect")
        self.proc = spawn(
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            log=self.log,
        )
        self.startup_seconds = wait_http(f"{self.api_url}/health", self.proc, self.log, timeout)
        return self

    def client_env(self) -> dict[str, str]:
        """What a process running flows against this server needs."""
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.home / "client"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }


def write_apprise_config(path: Path, sink_url: str) -> Path:
    path.write_text(f"urls:\n  - {sink_url}:\n    - tag: {', '.join(ALL_TAGS)}\n")
    return path


def itilflow_env(
    data_dir: Path, *, smtp_port: int = 9, apprise_config: Path | None = None, **extra: str
) -> dict[str, str]:
    """ITILFLOW_* variables for a gateway or runner child (fresh secrets per data dir)."""
    secrets_file = data_dir / "bench-secrets.env"
    if secrets_file.exists():
        token, key = secrets_file.read_text().split()
    else:
        token, key = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        data_dir.mkdir(parents=True, exist_ok=True)
        secrets_file.write_text(f"{token} {key}")
    env = {
        "ITILFLOW_DATA_DIR": str(data_dir),
        "ITILFLOW_DATABASE_URL": f"sqlite:///{(data_dir / 'itilflow.db').resolve()}",
        "ITILFLOW_API_TOKEN": token,
        "ITILFLOW_SECRET_KEY": key,
        "ITILFLOW_SMTP_HOST": "127.0.0.1",
        "ITILFLOW_SMTP_PORT": str(smtp_port),
        "ITILFLOW_SMTP_TIMEOUT": "5",
    }
    if apprise_config is not None:
        env["ITILFLOW_APPRISE_CONFIG"] = str(apprise_config)
    env.update({f"ITILFLOW_{k.upper()}": v for k, v in extra.items()})
    return env


def settings_from_env(env: dict[str, str]) -> Any:
    """The same Settings a child built from `env` sees (for the parent's own DB access)."""
    from pydantic import SecretStr

    from itilflow.settings import Settings

    return Settings(
        data_dir=Path(env["ITILFLOW_DATA_DIR"]),
        database_url=env["ITILFLOW_DATABASE_URL"],
        api_token=SecretStr(env["ITILFLOW_API_TOKEN"]),
        secret_key=SecretStr(env["ITILFLOW_SECRET_KEY"]),
        smtp_host="127.0.0.1",
        smtp_port=int(env["ITILFLOW_SMTP_PORT"]),
        apprise_config=Path(env["ITILFLOW_APPRISE_CONFIG"])
        if "ITILFLOW_APPRISE_CONFIG" in env
        else None,
    )


def prepare_database(url: str) -> None:
    """Bring the database to the code's revision, as `itilflow db upgrade` does before a gateway
    starts: the gateway refuses an empty one (DatabaseBehindError). Safe to repeat."""
    from itilflow.models import get_engine
    from itilflow.models.migrations import upgrade_database

    engine = get_engine(url)
    try:
        upgrade_database(engine)
    finally:
        engine.dispose()


def gateway_app() -> Any:
    """uvicorn factory (`_common:gateway_app --factory`): the gateway from ITILFLOW_* env."""
    from itilflow.gateway.app import create_app
    from itilflow.settings import Settings

    app = create_app(Settings())
    threads = int(os.environ.get("BENCH_GATEWAY_THREADS") or 0)
    return _ThreadLimit(app, threads) if threads else app


def serve_gateway() -> None:
    """The gateway served as `itilflow gateway` serves it (gateway/server.py's uvicorn
    configuration: the slow-client guard and limits), from ITILFLOW_* env."""
    import uvicorn

    from itilflow.gateway.server import server_config
    from itilflow.logs import configure_logging
    from itilflow.settings import Settings

    settings = Settings()
    # As the CLI does: the access log's lines (INFO) are written, and cost what they cost.
    configure_logging(settings.log_format, settings.log_level)
    uvicorn.Server(server_config(gateway_app(), settings)).run()


class _ThreadLimit:
    """Experiment only: run sync endpoints on at most `threads` worker threads (anyio's default
    is 40), to see what serialising the SQLite writers in-process would give."""

    def __init__(self, app: Any, threads: int) -> None:
        self.app, self.threads, self.done = app, threads, False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.done:
            import anyio.to_thread

            anyio.to_thread.current_default_thread_limiter().total_tokens = self.threads
            self.done = True
        await self.app(scope, receive, send)


class Gateway:
    """The gateway under uvicorn in a child process, as `itilflow gateway` runs it (1 worker,
    log level warning), unless `workers` or `extra_args` say otherwise."""

    def __init__(
        self, env: dict[str, str], log: Path, *, workers: int = 1, extra_args: Sequence[str] = ()
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = base_env() | env | {"ITILFLOW_GATEWAY_PORT": str(self.port)}
        self.log = log
        self.workers = workers
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = env["ITILFLOW_API_TOKEN"]

    def start(self, timeout: float = 60) -> Gateway:
        prepare_database(self.env["ITILFLOW_DATABASE_URL"])
        if self.workers == 1 and not self.extra_args and not os.environ.get("BENCH_PLAIN_UVICORN"):
            # As shipped; BENCH_PLAIN_UVICORN=1 measures uvicorn's defaults instead.
            env = self.env | {"ITILFLOW_GATEWAY_HOST": "127.0.0.1"}
            serve = [PYTHON, "-c", "import _common; _common.serve_gateway()"]
            self.proc = spawn(serve, env=env, log=self.log)
            wait_http(f"{self.url}/health", self.proc, self.log, timeout)
            return self
        args = [
            PYTHON,
            "-m",
            "uvicorn",
            "_common:gateway_app",
            "--factory",
            "--app-dir",
            str(BENCH),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            *self.extra_args,
        ]
        if self.workers > 1:
            args += ["--workers", str(self.workers)]
        self.proc = spawn(args, env=self.env, log=self.log)
        wait_http(f"{self.url}/health", self.proc, self.log, timeout)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            kill(self.proc)


# ---------------------------------------------------------------------------------- payloads


def alertmanager_payload(alerts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    alerts = list(alerts)
    first = alerts[0]
    return {
        "receiver": "itilflow-webhook",
        "status": "firing",
        "alerts": alerts,
        "groupLabels": {"alertname": first["labels"]["alertname"]},
        "commonLabels": {"alertname": first["labels"]["alertname"]},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "version": "4",
        "groupKey": '{}:{alertname="' + first["labels"]["alertname"] + '"}',
        "truncatedAlerts": 0,
    }


def firing_alert(index: int, *, run: str, starts_at: str, severity: str = "critical") -> dict:
    instance = f"host-{run}-{index:06d}:9100"
    return {
        "status": "firing",
        "labels": {
            "alertname": "HostDown",
            "instance": instance,
            "job": "node",
            "service": "web",
            "severity": severity,
        },
        "annotations": {
            "description": f"Node exporter on {instance} has not answered for 1 minute.",
            "runbook_url": "https://runbooks.example/HostDown",
            "summary": f"{instance} is down",
        },
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up+%3D%3D+0",
        "fingerprint": f"{run}{index:010x}",
    }


# ---------------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: Sequence[float], unit: str = "s", scale: float = 1.0) -> str:
    if not values:
        return "n=0"
    v = [x * scale for x in values]
    return (
        f"n={len(v)} p50={percentile(v, 50):.3f}{unit} p95={percentile(v, 95):.3f}{unit} "
        f"p99={percentile(v, 99):.3f}{unit} max={max(v):.3f}{unit}"
    )


def spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """median [min..max] of repeated runs."""
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return (
        f"{fmt.format(statistics.median(values))} "
        f"[{fmt.format(min(values))}..{fmt.format(max(values))}]"
    )


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)
