"""`itilflow up`: a Prefect server, the deployments, a worker, the runner and the gateway.

Each part is a child process; one that exits is started again with back-off while the others
keep running (itilflow/supervision.py); Ctrl-C (or SIGTERM) stops them in reverse order.
Everything lives under the data folder, so a second `up` finds its incidents and its Prefect
history again.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from itilflow import deployed
from itilflow.health import LogWatch, StackHealth, scheduler_loop_seconds, tracebacks_in
from itilflow.settings import SECRET_BLOCK_FIELDS, Settings
from itilflow.supervision import Child

PROJECT_DIR = Path(__file__).resolve().parent.parent

# Runs on the workers send a heartbeat every 30 s (Prefect's minimum; its default is 180): the
# recover-change deployment's trigger (prefect.yaml) declares a run lost after 45 s without one.
RUN_HEARTBEAT_SECONDS = 30
WORKER_ENV = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(RUN_HEARTBEAT_SECONDS)}
# The deployment of inspection.yaml's `hosts` group (prefect.yaml), which scrapes node_exporter.
HOSTS_INSPECTION = "patrol-inspection/inspection-hosts"


T = TypeVar("T")


class StackError(RuntimeError):
    pass


@dataclass
class Stack:
    settings: Settings
    children: list[Child] = field(default_factory=list)
    # What `up` tells the user about parts it started or left off (printed with the URLs).
    notes: list[str] = field(default_factory=list)
    # Where `up` says each stage as it starts and is ready.
    say: Callable[[str], None] = lambda line: None
    # mail.yaml's `enabled`: the mail intake (dispatch/mail_watch.py) runs as a child.
    mail_intake: bool = False
    # A stop signal that came while a child was being started: raised once it is a child (in
    # `children`), so that stop() finds it and no restart races the shutdown.
    _starting: bool = field(default=False, init=False, repr=False)
    _stop_deferred: bool = field(default=False, init=False, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir.resolve()

    @property
    def api_url(self) -> str:
        return self.settings.local_prefect_api_url

    def env(self) -> dict[str, str]:
        s = self.settings
        assert s.api_token is not None and s.secret_key is not None
        env = {
            **os.environ,
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.data_dir / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # Runs started from the UI should start within a couple of seconds.
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "ITILFLOW_DATA_DIR": str(self.data_dir),
            "ITILFLOW_DATABASE_URL": s.database_url or "",
            "ITILFLOW_PUBLIC_URL": s.public_url or "",
            "ITILFLOW_DEMO": "true" if s.demo else "false",
            "ITILFLOW_SMTP_HOST": s.smtp_host,
            "ITILFLOW_SMTP_PORT": str(s.smtp_port),
            # The stack's own addresses, for inspection.yaml's placeholders (Settings.stack_urls).
            "ITILFLOW_PREFECT_PORT": str(s.prefect_port),
            # The runner's /metrics (docs/observability.md): the gateway's port + 1 by default.
            "ITILFLOW_RUNNER_METRICS_PORT": str(s.runner_metrics_port or 0),
        }
        if s.prefect_api_url:
            env["ITILFLOW_PREFECT_API_URL"] = s.prefect_api_url
        if s.node_exporter_url:
            env["ITILFLOW_NODE_EXPORTER_URL"] = s.node_exporter_url
        env.update(self.secrets_env())
        if s.policy_dir:
            env["ITILFLOW_POLICY_DIR"] = str(s.policy_dir.resolve())
        if s.apprise_config:
            env["ITILFLOW_APPRISE_CONFIG"] = str(s.apprise_config.resolve())
        return env

    def secrets_env(self) -> dict[str, str]:
        """Secrets for the children: a secret read from a Prefect Secret block travels as the
        block's name (each child reads it), never as its value in an environment."""
        s = self.settings
        env: dict[str, str] = {}
        for field_name in SECRET_BLOCK_FIELDS:
            variable = f"ITILFLOW_{field_name.upper()}"
            block = getattr(s, f"{field_name}_secret_block")
            value = getattr(s, field_name)
            if field_name in s.from_secret_blocks and block:
                env[f"{variable}_SECRET_BLOCK"] = block
                env[variable] = ""  # not an inherited value from the parent's environment
            elif value is not None:
                env[variable] = value.get_secret_value()
        if s.prefect_auth_string is not None:
            auth = s.prefect_auth_string.get_secret_value()
            env["PREFECT_API_AUTH_STRING"] = auth
            if not s.prefect_api_url:
                env["PREFECT_SERVER_API_AUTH_STRING"] = auth
        return env

    @property
    def demo_inbox(self) -> bool:
        """Demo mode keeps mail and chat in the data folder unless the user set their own."""
        return "ITILFLOW_SMTP_HOST" not in os.environ and "ITILFLOW_SMTP_PORT" not in os.environ

    def use_demo_inbox(self, tags: list[str]) -> Path:
        from itilflow.demo.inbox import write_apprise_config

        folder = self.data_dir / "demo-inbox"
        self.settings.smtp_host = "127.0.0.1"
        self.settings.smtp_port = self.settings.demo_smtp_port
        if self.settings.apprise_config is None:
            self.settings.apprise_config = write_apprise_config(
                folder / "apprise.yaml", self.settings.demo_chat_port, tags
            )
        return folder

    def server_env(self) -> dict[str, str]:
        """What only the Prefect server we start needs: its database, when it is not the
        default SQLite file under PREFECT_HOME."""
        url = self.settings.prefect_database_url
        if url is None:
            return {}
        # Prefect reads the first of these it finds; set both so that neither is left stale.
        return {
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": url.get_secret_value(),
            "PREFECT_API_DATABASE_CONNECTION_URL": url.get_secret_value(),
        }

    def start(
        self,
        name: str,
        args: list[str],
        *,
        terms: int = 1,
        grace: float = 15.0,
        extra_env: dict[str, str] | None = None,
    ) -> Child:
        self._starting = True
        try:
            process, log, offset = self._popen(name, args, extra_env or {})
            child = Child(name, process, terms, grace, log, offset, args, extra_env or {})
            self.children.append(child)
        finally:
            self._starting = False
        self._raise_deferred_stop()
        return child

    def restart(self, child: Child) -> None:
        """Start `child` again as it was started, appending to its log."""
        self._starting = True
        try:
            child.process, child.log, child.log_offset = self._popen(
                child.name, child.args, child.extra_env
            )
            child.started_at = time.monotonic()
            child.restart_at = None
        finally:
            self._starting = False
        self._raise_deferred_stop()

    def _popen(
        self, name: str, args: list[str], extra_env: dict[str, str]
    ) -> tuple[subprocess.Popen[bytes], Path, int]:
        log_dir = self.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{name}.log"
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                args,
                env={**self.env(), **extra_env},
                cwd=PROJECT_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return process, log_path, log_offset

    def _raise_deferred_stop(self) -> None:
        if self._stop_deferred:
            self._stop_deferred = False
            raise KeyboardInterrupt

    def interrupt(self, *_: object) -> None:
        """The SIGINT/SIGTERM handler of `up`: stop, but never between a child's start and
        its place in `children` (stop() would miss it)."""
        if self._starting:
            self._stop_deferred = True
            return
        raise KeyboardInterrupt

    def run(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            args, env=self.env(), cwd=PROJECT_DIR, capture_output=True, text=True
        )
        if check and result.returncode != 0:
            raise StackError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def wait_for(self, url: str, child: Child | None, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child is not None and child.process.poll() is not None:
                raise StackError(child.exit_message())
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise StackError(f"{url} did not answer within {timeout:.0f} s")

    def up(self) -> None:
        """Start every part in order, saying (`say`) each stage as it starts and is ready."""
        itilflow = [sys.executable, "-m", "itilflow.cli"]
        if self.settings.prefect_api_url and self.settings.prefect_database_url:
            raise StackError(
                "ITILFLOW_PREFECT_DATABASE_URL is the database of the Prefect server itilflow up "
                "starts; with ITILFLOW_PREFECT_API_URL set it starts none (set that server's "
                "database where it runs)"
            )
        # Before any child: each gets the credentials of the server in its environment.
        self.settings.require_prefect_auth()
        began = time.monotonic()
        if self.settings.demo and self.demo_inbox:
            inbox = [*itilflow, "demo-inbox"]
            self.stage("demo inbox", lambda: self.start("demo-inbox", inbox), waits=False)
        # Before the other children: they read its address from their environment.
        node_exporter = None
        if self.settings.demo:
            node_exporter = self.stage("node exporter", self.start_node_exporter)
        if not self.settings.prefect_api_url:
            self.stage("prefect server", self.start_prefect_server)

        if self.deployments_up_to_date():
            self.say("deployments ... unchanged since the last up, not registered again\n")
        else:
            self.stage("deployments", self.deploy)
        if self.settings.demo:
            self.notes.append(self.switch_hosts_inspection(node_exporter))
        for number in range(1, self.settings.workers + 1):
            self.stage(f"worker {number}", lambda n=number: self.start_worker(n), waits=False)
        self.stage("runner", lambda: self.start("runner", [*itilflow, "runner"]), waits=False)
        if self.mail_intake:
            intake = [*itilflow, "mail-intake"]
            self.stage("mail intake", lambda: self.start("mail-intake", intake), waits=False)
        self.stage("gateway", lambda: self.start_gateway([*itilflow, "gateway"]))
        self.say(f"up in {time.monotonic() - began:.1f} s\n")

    def deploy(self) -> None:
        """The work pool of prefect.yaml (if missing) and every deployment there; remembered
        (itilflow/deployed.py) so that the next `up` can skip it."""
        prefect = [sys.executable, "-m", "prefect"]
        stamp = self.data_dir / "prefect" / deployed.STAMP
        stamp.unlink(missing_ok=True)
        current = deployed.digest(PROJECT_DIR, self.api_url)
        self.run([*prefect, "work-pool", "create", "itilflow", "--type", "process"], check=False)
        self.run([*prefect, "--no-prompt", "deploy", "--all"])
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(current + "\n")

    def deployments_up_to_date(self) -> bool:
        """The server has what the last deploy registered, from the same prefect.yaml and code."""
        stamp = self.data_dir / "prefect" / deployed.STAMP
        current = deployed.digest(PROJECT_DIR, self.api_url)
        auth = self.settings.prefect_basic_auth
        with httpx.Client(base_url=self.api_url, auth=auth, timeout=30) as api:
            return deployed.up_to_date(stamp, current, api, "itilflow", PROJECT_DIR)

    def stage(self, label: str, begin: Callable[[], T], *, waits: bool = True) -> T:
        """`begin()`, said as one line: "label ... ready in N s", or "started" for a part
        that is not waited for (`waits` False: a worker, the runner)."""
        self.say(f"{label} ... ")
        began = time.monotonic()
        result = begin()
        done = f"ready in {time.monotonic() - began:.1f} s" if waits else "started"
        self.say(f"{done}\n")
        return result

    def start_gateway(self, command: list[str]) -> Child:
        gateway = self.start("gateway", command)
        self.wait_for(f"{self.settings.public_url}/health", gateway, timeout=60)
        return gateway

    def start_prefect_server(self) -> Child:
        """The Prefect server, on SQLite under the data folder unless told otherwise, listening
        on prefect_host (loopback) and asking every API call but /health for the credentials
        (PREFECT_SERVER_API_AUTH_STRING from env()); returns once it answers."""
        self.settings.require_prefect_auth()
        (self.data_dir / "prefect").mkdir(parents=True, exist_ok=True)
        server = self.start(
            "prefect-server", self.prefect_server_command(), extra_env=self.server_env()
        )
        self.wait_for(self.api_url + "/health", server, timeout=120)
        return server

    def prefect_server_command(self) -> list[str]:
        """`prefect server start` on asyncio and h11 (itilflow/prefect_server.py)."""
        s = self.settings
        command = [sys.executable, "-m", "itilflow.prefect_server", "server", "start"]
        return command + ["--host", s.prefect_host, "--port", str(s.prefect_port)]

    def start_node_exporter(self) -> str | None:
        """The node_exporter the demo's hosts inspection scrapes: ITILFLOW_NODE_EXPORTER_URL,
        else node_exporter_command (Debian's prometheus-node-exporter) started as a child on
        node_exporter_port or a free one; None when neither is there."""
        s = self.settings
        if s.node_exporter_url:
            return s.node_exporter_url
        command = shutil.which(s.node_exporter_command) if s.node_exporter_command else None
        if command is None:
            return None
        port = s.node_exporter_port or free_port()
        url = f"http://127.0.0.1:{port}"
        child = self.start("node-exporter", [command, f"--web.listen-address=127.0.0.1:{port}"])
        self.wait_for(f"{url}/metrics", child, timeout=30)
        s.node_exporter_url = url
        return url

    def switch_hosts_inspection(self, node_exporter: str | None) -> str:
        """The hosts inspection on when there is a node_exporter to scrape, else off (set both
        ways on every `up`: the server keeps a schedule's state across deploys); says which."""
        if not self.set_schedules_active(HOSTS_INSPECTION, active=node_exporter is not None):
            return "hosts inspection: not deployed (no inspection-hosts in prefect.yaml)"
        if node_exporter:
            return f"hosts inspection: node_exporter at {node_exporter}"
        return (
            f"hosts inspection: off ({self.settings.node_exporter_command} is not installed; "
            "its deployment's schedule is paused; install Debian's prometheus-node-exporter "
            "or set ITILFLOW_NODE_EXPORTER_URL)"
        )

    def set_schedules_active(self, deployment: str, *, active: bool) -> bool:
        """Pause or resume every schedule of `deployment` ("flow/deployment") on the Prefect
        server; pausing drops its runs already scheduled. (Taking a schedule out of
        prefect.yaml would not do: the server keeps it.) False: no such deployment."""
        auth = self.settings.prefect_basic_auth
        with httpx.Client(base_url=self.api_url, auth=auth, timeout=30) as api:
            found = api.get(f"/deployments/name/{deployment}")
            if found.status_code == 404:
                return False
            if found.status_code != 200:
                raise StackError(f"deployment {deployment}: {found.status_code} {found.text}")
            for schedule in found.json()["schedules"]:
                if schedule["active"] == active:
                    continue
                api.patch(
                    f"/deployments/{found.json()['id']}/schedules/{schedule['id']}",
                    json={"active": active},
                ).raise_for_status()
        return True

    def worker_command(self, number: int, *, limit: int | None = None) -> list[str]:
        """`prefect worker start` for the work pool, named after this host (unique per pool);
        `limit` caps the runs it takes at once (each is a process of its own)."""
        name = f"itilflow-{socket.gethostname()}-{number}"
        pool = self.settings.work_pool
        command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool]
        return command + (["--limit", str(limit)] if limit else []) + ["--name", name]

    def start_worker(self, number: int) -> Child:
        # One worker keeps its old log name; more are worker-2, worker-3, ...
        name = "worker" if number == 1 else f"worker-{number}"
        child = self.start(
            name, self.worker_command(number), terms=2, grace=5, extra_env=WORKER_ENV
        )
        child.keep_group = True
        return child

    def stop(self) -> None:
        # A second Ctrl-C (or a SIGTERM forwarded by a wrapper) must not cut the shutdown short
        # and leave children running; the handlers come back afterwards, so the process (or a
        # test that stops one stack and starts another) can still be stopped.
        previous = {
            signum: signal.signal(signum, signal.SIG_IGN)
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            for child in reversed(self.children):
                self._stop_child(child)
            self.children.clear()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    @staticmethod
    def _stop_child(child: Child) -> None:
        for _ in range(child.terms):
            if child.process.poll() is None:
                os.killpg(child.process.pid, signal.SIGTERM)
                try:
                    child.process.wait(timeout=child.grace)
                except subprocess.TimeoutExpired:
                    continue
        if child.process.poll() is None:
            os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()

    def health(self) -> StackHealth:
        """The checks `watch` makes, from where each child's log began at this start."""
        server_log = self.data_dir / "logs" / "prefect-server.log"
        return StackHealth(
            api_url=self.api_url,
            server_log=None if self.settings.prefect_api_url else server_log,
            logs=[
                LogWatch(child.name, child.log, child.log_offset)
                for child in self.children
                if child.log is not None
            ],
            loop_seconds=scheduler_loop_seconds(self.env()),
            auth=self.settings.prefect_basic_auth,
        )

    def watch(self, say: Callable[[str], None], stop: threading.Event | None = None) -> None:
        """Run until we are told to stop (KeyboardInterrupt, or `stop` set): restart a child
        that exited, with back-off, the others untouched; tell (`say`) each exit and restart,
        tracebacks in the children's logs and a scheduler that makes no runs."""
        health = self.health()
        stop = stop or threading.Event()
        while not stop.is_set():
            self.supervise(say)
            for line in health.check():
                say(line)
            stop.wait(1)

    def supervise(self, say: Callable[[str], None]) -> None:
        """One look at every child: the exited are told and scheduled, the due restarted."""
        now = time.monotonic()
        for child in list(self.children):
            line = child.exited(now)
            if line is not None:
                say(line)
            elif child.restart_due(now):
                self.restart(child)
                say(f"{child.name} started again (pid {child.process.pid})")


def logged_tracebacks(log_dir: Path) -> dict[str, list[str]]:
    """Every log in the folder that holds a traceback, with their exception lines."""
    found = {path.name: tracebacks_in(path) for path in sorted(log_dir.glob("*.log"))}
    return {name: lines for name, lines in found.items() if lines}


def keep_data_private(data_dir: Path) -> None:
    """Only the owner may read the data folder: it holds the databases, the logs, the secrets and,
    in demo mode, mails with approval links and codes. From here on files are made 0600 (the
    children `up` starts inherit the umask); what an older version left readable is tightened."""
    os.umask(0o077)
    data_dir.mkdir(parents=True, exist_ok=True)
    for path in [data_dir, *data_dir.rglob("*")]:
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(mode & 0o700)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
