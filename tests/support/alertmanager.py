"""Run a real Prometheus Alertmanager for end-to-end tests.

The binary comes from Debian's ``prometheus-alertmanager`` package (``.ci/install-test-deps.sh``
installs it on CI).  Each :class:`Alertmanager` gets its own temp dir (config, storage, log), a
free loopback port and clustering disabled, so any number of them can run side by side and none
touches the packaged service's port 9093/9094.

Typical use::

    with Alertmanager(webhook_url, token="s3cret") as am:
        am.post_alerts([make_alert("HostDown", instance="web-01:9100")])
        ...  # the webhook receives a "firing" payload after ~group_wait
        am.resolve_alerts([make_alert("HostDown", instance="web-01:9100")])

or the ``alertmanager_factory`` pytest fixture (register it from a conftest, e.g.
``from tests.support.alertmanager import alertmanager_factory  # noqa: F401``), which stops every
instance it started at teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

__all__ = [
    "Alertmanager",
    "AlertmanagerError",
    "AlertmanagerNotInstalled",
    "alertmanager_factory",
    "find_alertmanager_binary",
    "format_time",
    "make_alert",
]

#: Environment variable that may point at a specific alertmanager binary.
BINARY_ENV = "ITILFLOW_ALERTMANAGER_BIN"
BINARY_NAMES = ("prometheus-alertmanager", "alertmanager")
INSTALL_HINT = (
    "Alertmanager binary not found (looked for $"
    + BINARY_ENV
    + ", "
    + ", ".join(BINARY_NAMES)
    + " on PATH). Install the test dependencies with `sudo .ci/install-test-deps.sh` "
    "(Debian package prometheus-alertmanager)."
)

Duration = str | int | float | timedelta


class AlertmanagerError(RuntimeError):
    """Alertmanager failed to start, or rejected a request."""


class AlertmanagerNotInstalled(AlertmanagerError):
    """No alertmanager binary on this machine."""


def find_alertmanager_binary() -> str:
    """Path of the alertmanager binary, or raise :class:`AlertmanagerNotInstalled`."""
    override = os.environ.get(BINARY_ENV)
    if override:
        if os.access(override, os.X_OK):
            return override
        raise AlertmanagerNotInstalled(f"${BINARY_ENV}={override!r} is not executable.")
    for name in BINARY_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise AlertmanagerNotInstalled(INSTALL_HINT)


def format_time(value: datetime | str) -> str:
    """RFC 3339 in UTC as Alertmanager expects (naive datetimes are taken as UTC)."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _duration(value: Duration) -> str:
    """Alertmanager duration string ("1s", "1500ms") from str / seconds / timedelta."""
    if isinstance(value, str):
        return value
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    ms = round(seconds * 1000)
    if ms <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_alert(
    alertname: str,
    *,
    instance: str | None = "web-01:9100",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    starts_at: datetime | str | None = None,
    ends_at: datetime | str | None = None,
    generator_url: str | None = "http://prometheus.example:9090/graph?g0.expr=up+%3D%3D+0",
) -> dict[str, Any]:
    """An alert in the ``POST /api/v2/alerts`` shape (labels, annotations, startsAt, ...)."""
    alert_labels = {"alertname": alertname}
    if instance is not None:
        alert_labels["instance"] = instance
    alert_labels.update(labels or {})
    alert: dict[str, Any] = {"labels": alert_labels, "annotations": dict(annotations or {})}
    if starts_at is not None:
        alert["startsAt"] = format_time(starts_at)
    if ends_at is not None:
        alert["endsAt"] = format_time(ends_at)
    if generator_url is not None:
        alert["generatorURL"] = generator_url
    return alert


def _label_key(labels: Mapping[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset((str(k), str(v)) for k, v in labels.items())


class Alertmanager:
    """A real Alertmanager process with one webhook receiver, for end-to-end tests.

    The generated route sends everything to one receiver::

        webhook_configs:
          - url: <webhook_url>
            send_resolved: true
            max_alerts: 0          # 0 = no limit
            http_config: {authorization: {type: Bearer, credentials: <token>}}

    Notification timing: the first notification of a new group goes out ``group_wait`` after
    the first alert arrives; later changes (new alerts, resolutions) go out on the next
    ``group_interval`` tick; an unchanged firing group is re-sent every ``repeat_interval``.
    """

    def __init__(
        self,
        webhook_url: str,
        token: str | None = None,
        *,
        group_by: Sequence[str] = ("alertname", "instance"),
        group_wait: Duration = "1s",
        group_interval: Duration = "1s",
        repeat_interval: Duration = "1h",
        resolve_timeout: Duration = "5m",
        send_resolved: bool = True,
        max_alerts: int = 0,
        receiver: str = "itilflow-webhook",
        external_url: str | None = None,
        binary: str | None = None,
        workdir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 15.0,
        log_level: str = "info",
    ) -> None:
        self.webhook_url = webhook_url
        self.token = token
        self.group_by = list(group_by)
        self.group_wait = _duration(group_wait)
        self.group_interval = _duration(group_interval)
        self.repeat_interval = _duration(repeat_interval)
        self.resolve_timeout = _duration(resolve_timeout)
        self.send_resolved = send_resolved
        self.max_alerts = max_alerts
        self.receiver = receiver
        self.startup_timeout = startup_timeout
        self.log_level = log_level
        self._external_url = external_url
        self._binary = binary
        self._own_workdir = workdir is None
        self._workdir_arg = Path(workdir) if workdir is not None else None
        self.workdir: Path | None = None
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._client: httpx.Client | None = None
        self._starts: dict[frozenset[tuple[str, str]], str] = {}

    # ------------------------------------------------------------------ config / paths
    @property
    def config(self) -> dict[str, Any]:
        """The Alertmanager configuration (written as JSON, which is valid YAML)."""
        webhook: dict[str, Any] = {
            "url": self.webhook_url,
            "send_resolved": self.send_resolved,
            "max_alerts": self.max_alerts,
        }
        if self.token is not None:
            webhook["http_config"] = {
                "authorization": {"type": "Bearer", "credentials": self.token}
            }
        return {
            "global": {"resolve_timeout": self.resolve_timeout},
            "route": {
                "receiver": self.receiver,
                "group_by": self.group_by,
                "group_wait": self.group_wait,
                "group_interval": self.group_interval,
                "repeat_interval": self.repeat_interval,
            },
            "receivers": [{"name": self.receiver, "webhook_configs": [webhook]}],
        }

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (no trailing slash)."""
        if self.port is None:
            raise AlertmanagerError("Alertmanager is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def external_url(self) -> str:
        """What Alertmanager puts in ``externalURL`` (defaults to :attr:`url`)."""
        return self._external_url or self.url

    @property
    def config_path(self) -> Path:
        return self._dir / "alertmanager.yml"

    @property
    def log_path(self) -> Path:
        return self._dir / "alertmanager.log"

    @property
    def _dir(self) -> Path:
        if self.workdir is None:
            raise AlertmanagerError("Alertmanager is not started")
        return self.workdir

    def read_log(self) -> str:
        """Alertmanager's stdout+stderr so far (logfmt)."""
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, AlertmanagerError):
            return ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Alertmanager:
        """Write the config, start the process, wait for ``/-/ready``. Returns ``self``."""
        if self.running:
            return self
        binary = self._binary or find_alertmanager_binary()
        if self._workdir_arg is not None:
            self.workdir = self._workdir_arg
            self.workdir.mkdir(parents=True, exist_ok=True)
        else:
            self.workdir = Path(tempfile.mkdtemp(prefix="itilflow-alertmanager-"))
        (self.workdir / "data").mkdir(exist_ok=True)
        self._client = httpx.Client(timeout=5.0, trust_env=False)
        try:
            last_error: AlertmanagerError | None = None
            for _attempt in range(3):  # the free port may be taken in between: retry
                self.port = _free_port()
                self.config_path.write_text(json.dumps(self.config, indent=2) + "\n")
                try:
                    self._spawn_and_wait(binary)
                    return self
                except AlertmanagerError as exc:
                    last_error = exc
                    self._terminate()
                    if "address already in use" not in str(exc):
                        break
            assert last_error is not None
            raise last_error
        except BaseException:
            self.stop()
            raise

    def _spawn_and_wait(self, binary: str) -> None:
        args = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.path={self._dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--web.external-url={self.external_url}",
            "--cluster.listen-address=",  # empty: no HA/gossip (and no port 9094)
            f"--log.level={self.log_level}",
        ]
        if self._log_file is not None:
            self._log_file.close()
        self._log_file = open(self.log_path, "ab")  # closed in stop()
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self._dir,
            start_new_session=True,  # a Ctrl-C in the test run does not hit it twice
        )
        assert self._client is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self.process.poll()
            if code is not None:
                raise AlertmanagerError(
                    f"alertmanager exited with code {code} during startup:\n{self._log_tail()}"
                )
            try:
                if self._client.get(f"{self.url}/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AlertmanagerError(
                    f"alertmanager not ready on {self.url} after {self.startup_timeout}s:\n"
                    f"{self._log_tail()}"
                )
            time.sleep(0.05)

    def _log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.read_log().splitlines()[-lines:])

    def _terminate(self, timeout: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate (SIGTERM, then SIGKILL after ``timeout``) and clean up. Idempotent."""
        self._terminate(timeout)
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> Alertmanager:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"url={self.url}" if self.port is not None and self.running else "stopped"
        return f"<Alertmanager {state} webhook={self.webhook_url}>"

    # ------------------------------------------------------------------ API
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self._client is None or not self.running:
            raise AlertmanagerError("Alertmanager is not running")
        response = self._client.request(method, f"{self.url}{path}", **kwargs)
        if response.status_code >= 400:
            raise AlertmanagerError(
                f"{method} {path} -> HTTP {response.status_code}: {response.text.strip()}"
            )
        return response

    def post_alerts(self, alerts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """POST alerts to ``/api/v2/alerts``; returns what was sent.

        Each alert: ``labels`` (required), ``annotations``, ``startsAt``, ``endsAt``,
        ``generatorURL``; times may be datetimes.  A missing ``startsAt`` is set to now so that
        :meth:`resolve_alerts` can reuse it (Alertmanager rejects ``endsAt`` < ``startsAt``).
        """
        now = format_time(datetime.now(UTC))
        sent = []
        for alert in alerts:
            body = self._normalise(alert)
            body.setdefault("startsAt", now)
            self._starts.setdefault(_label_key(body["labels"]), body["startsAt"])
            sent.append(body)
        self._request("POST", "/api/v2/alerts", json=sent)
        return sent

    def resolve_alerts(
        self, alerts: Iterable[Mapping[str, Any]], *, ends_at: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Re-post the alerts (matched by labels) with ``endsAt`` = now (or ``ends_at``).

        ``startsAt`` is taken from the alert, else from the earlier :meth:`post_alerts`,
        else ``endsAt`` - 1 minute.
        """
        end = ends_at or datetime.now(UTC)
        end_text = format_time(end)
        sent = []
        for alert in alerts:
            body = self._normalise(alert)
            key = _label_key(body["labels"])
            body["endsAt"] = end_text
            if "startsAt" not in body:
                body["startsAt"] = self._starts.get(key) or format_time(end - timedelta(minutes=1))
            self._starts.pop(key, None)
            sent.append(body)
        self._request("POST", "/api/v2/alerts", json=sent)
        return sent

    def get_alerts(self, **params: Any) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` (params e.g. ``active=True``, ``filter=['alertname="X"']``)."""
        query = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items()}
        return self._request("GET", "/api/v2/alerts", params=query).json()

    def status(self) -> dict[str, Any]:
        """``GET /api/v2/status`` (version info, loaded config, cluster status)."""
        return self._request("GET", "/api/v2/status").json()

    @staticmethod
    def _normalise(alert: Mapping[str, Any]) -> dict[str, Any]:
        if "labels" not in alert or not alert["labels"]:
            raise ValueError(f"alert without labels: {alert!r}")
        body = dict(alert)
        body["labels"] = {str(k): str(v) for k, v in alert["labels"].items()}
        body["annotations"] = {str(k): str(v) for k, v in (alert.get("annotations") or {}).items()}
        for field in ("startsAt", "endsAt"):
            if body.get(field) is None:
                body.pop(field, None)
            else:
                body[field] = format_time(body[field])
        return body


@pytest.fixture
def alertmanager_factory() -> Iterator[Callable[..., Alertmanager]]:
    """``make(webhook_url, token=None, **kwargs) -> Alertmanager`` (started); all are stopped
    at teardown.  kwargs are those of :class:`Alertmanager`."""
    started: list[Alertmanager] = []

    def make(webhook_url: str, token: str | None = None, **kwargs: Any) -> Alertmanager:
        am = Alertmanager(webhook_url, token, **kwargs)
        started.append(am)
        return am.start()

    yield make
    for am in reversed(started):
        am.stop()
