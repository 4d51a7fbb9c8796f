"""The health of a running stack: what `itilflow up` watches and `itilflow doctor` checks.

Kept apart from the stack so that each check can be tested on a log file or a Prefect API alone.
A stack can look up and still do nothing: prefect 3.8.8's scheduler failed every loop on
SQLAlchemy 2.1 (a traceback a minute in the server's log) and no scheduled deployment ran, with
every process alive. So besides a child that exits, `up` looks for tracebacks in the children's
logs and for scheduled deployments that have no upcoming runs from the scheduler.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

TRACEBACK_MARK = "Traceback (most recent call last)"
# The default of PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS.
DEFAULT_SCHEDULER_LOOP_SECONDS = 60.0
_GROUP_PREFIX = re.compile(r"^ *\| ?")
# Between the parts of a chained exception, at the margin.
_CHAINED = re.compile(r"^(The above exception was|During handling of the above exception)")
# A traceback still being written is summarised on a later read, up to this much text.
_MAX_PENDING_CHARS = 200_000


def scheduler_loop_seconds(environ: dict[str, str] | None = None) -> float:
    """How often the Prefect server's scheduler visits every deployment."""
    environ = os.environ if environ is None else environ
    for name in (
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS",
        "PREFECT_API_SERVICES_SCHEDULER_LOOP_SECONDS",
    ):
        if environ.get(name):
            return float(environ[name])
    return DEFAULT_SCHEDULER_LOOP_SECONDS


def _exception_line(line: str) -> str | None:
    """The line itself when it is a traceback's last (the exception) line, else None.

    Frames are indented; an exception group prints its parts after "| " prefixes.
    """
    content = _GROUP_PREFIX.sub("", line.rstrip("\n"), count=1)
    if not content or content[0] in " \t+|" or TRACEBACK_MARK in content:
        return None
    return content.strip()


def traceback_summaries(text: str, *, final: bool = False) -> tuple[list[str], str]:
    """The exception line of each complete traceback in `text` (of the last one of a chain),
    and the text of a traceback whose exception line is not written yet, to read again with
    what follows. `final`: nothing follows (a cut-off traceback is summarised as such)."""
    summaries: list[str] = []
    lines = text.splitlines(keepends=True)
    index = 0
    while index < len(lines):
        if TRACEBACK_MARK not in lines[index]:
            index += 1
            continue
        start = index
        summary = None
        while True:
            index += 1
            # A line still being written is read again with the rest of it.
            if index >= len(lines) or not (final or lines[index].endswith("\n")):
                if final:
                    summaries.append(summary or "(a traceback cut off before its exception)")
                    return summaries, ""
                return summaries, "".join(lines[start:])[-_MAX_PENDING_CHARS:]
            summary = _exception_line(lines[index])
            if summary is None:
                continue
            following = _next_text(lines, index + 1)
            if following is None and final:
                break
            if following is None:  # a chain may go on: wait for the next line
                return summaries, "".join(lines[start:])[-_MAX_PENDING_CHARS:]
            if not _CHAINED.match(following):
                break
            # The chain's next traceback: its exception line is the one to report.
            while TRACEBACK_MARK not in lines[index]:
                index += 1
        summaries.append(summary)
        index += 1
    return summaries, ""


def _next_text(lines: list[str], index: int) -> str | None:
    """The next complete line with text from `index` on (None when there is none yet)."""
    for line in lines[index:]:
        if not line.endswith("\n"):
            return None
        if line.strip():
            return line
    return None


def tracebacks_in(path: Path) -> list[str]:
    """The exception line of every traceback in a finished log file (a cut-off one too)."""
    if not path.exists():
        return []
    return traceback_summaries(path.read_text(encoding="utf-8", errors="replace"), final=True)[0]


@dataclass
class LogWatch:
    """New tracebacks in one child's log, read from where the child started writing."""

    name: str
    path: Path
    offset: int = 0
    _pending: str = ""

    def new_tracebacks(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        self.offset += len(data)
        summaries, self._pending = traceback_summaries(
            self._pending + data.decode("utf-8", errors="replace")
        )
        return summaries

    def final_tracebacks(self) -> list[str]:
        """The traceback read last, when nothing more will be written (the child ended)."""
        pending, self._pending = self._pending, ""
        return traceback_summaries(pending, final=True)[0] if pending else []


def post_to_prefect(api: httpx.Client, path: str, body: dict, *, tries: int = 5) -> httpx.Response:
    """POST to the Prefect API; again after a 503, its "try again" when its SQLite database
    was busy (Prefect's own client retries those too)."""
    for attempt in range(tries):
        response = api.post(path, json=body)
        if response.status_code != 503 or attempt == tries - 1:
            break
        time.sleep(1 + attempt)
    response.raise_for_status()
    return response


def scheduled_deployments(api: httpx.Client) -> list[dict]:
    """The deployments the scheduler should make runs for: not paused, an active schedule."""
    response = post_to_prefect(api, "/deployments/filter", {})
    return [
        deployment
        for deployment in response.json()
        if not deployment.get("paused")
        and any(schedule.get("active", True) for schedule in deployment.get("schedules") or [])
    ]


def deployments_without_upcoming_runs(api: httpx.Client, deployments: Iterable[dict]) -> list[str]:
    """Names of those deployments with no future run made by the scheduler.

    The scheduler keeps at least 3 runs (and an hour) ahead of every schedule, up to 100 days:
    a schedule rarer than that would have none, itilflow has none such.
    """
    missing = []
    for deployment in deployments:
        response = post_to_prefect(
            api,
            "/flow_runs/filter",
            {
                "deployments": {"id": {"any_": [deployment["id"]]}},
                "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
                "sort": "EXPECTED_START_TIME_DESC",
                "limit": 5,
            },
        )
        if not any(run.get("auto_scheduled") for run in response.json()):
            missing.append(deployment["name"])
    return missing


@dataclass
class StackHealth:
    """What `itilflow up` checks while it runs: tracebacks in the children's logs (every few
    seconds) and, from a scheduler loop after the start on, once a loop, that every scheduled
    deployment has upcoming runs. `check` returns the lines to tell the user."""

    api_url: str
    server_log: Path | None
    logs: list[LogWatch] = field(default_factory=list)
    # The Prefect API's basic auth (ITILFLOW_PREFECT_AUTH_STRING), as (user, password).
    auth: tuple[str, str] | None = None
    loop_seconds: float = DEFAULT_SCHEDULER_LOOP_SECONDS
    started: float = field(default_factory=time.monotonic)
    log_every: float = 5.0
    _next_log_check: float = 0.0
    _next_schedule_check: float = 0.0
    _missing_before: set[str] = field(default_factory=set)
    _scheduler_ok: bool | None = None
    # (child, exception line) already told: a failing loop logs the same one every minute.
    _told: set[tuple[str, str]] = field(default_factory=set)
    _api_error_told: bool = False

    def __post_init__(self) -> None:
        # The server's loop for recently changed deployments makes their runs within seconds
        # of the deploy; the full loop visits every deployment once per loop_seconds.
        self._next_schedule_check = self.started + self.loop_seconds + 15

    def check(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        lines: list[str] = []
        if now >= self._next_log_check:
            self._next_log_check = now + self.log_every
            for watch in self.logs:
                for summary in watch.new_tracebacks():
                    if (watch.name, summary) in self._told:
                        continue
                    self._told.add((watch.name, summary))
                    lines.append(
                        f"{watch.name} logged a traceback ({summary}); see {watch.path} "
                        "(said once per kind)"
                    )
        if now >= self._next_schedule_check:
            self._next_schedule_check = now + self.loop_seconds
            lines.extend(self.check_scheduler())
        return lines

    def check_scheduler(self) -> list[str]:
        """A line when the scheduler's state changed: failing, or working again.

        A deployment counts as failing when it had no upcoming runs at two checks a loop
        apart: a changed schedule takes the deployment's runs away until the next loop.
        """
        where = f"; see {self.server_log}" if self.server_log else ""
        try:
            with httpx.Client(base_url=self.api_url, timeout=10, auth=self.auth) as api:
                deployments = scheduled_deployments(api)
                missing_now = set(deployments_without_upcoming_runs(api, deployments))
        except httpx.HTTPError as exc:
            if self._api_error_told:
                return []
            self._api_error_told = True  # once, until it answers again
            return [f"could not ask the Prefect server about scheduled runs: {exc}"]
        self._api_error_told = False
        missing = sorted(missing_now & self._missing_before)
        self._missing_before = missing_now
        if missing:
            if self._scheduler_ok is not False:
                self._scheduler_ok = False
                return [
                    f"the Prefect server's scheduler made no runs for {', '.join(missing)} "
                    f"(scheduled deployments; it runs every {self.loop_seconds:.0f} s){where}"
                ]
            return []
        if missing_now:
            return []  # not yet two checks in a row
        if self._scheduler_ok is not True:
            first = self._scheduler_ok is None
            self._scheduler_ok = True
            if first:
                return [f"scheduler: all {len(deployments)} scheduled deployments have runs ahead"]
            return ["scheduler: runs are being scheduled again"]
        return []
