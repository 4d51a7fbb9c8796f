"""How `itilflow up` keeps its children running: a child that exits is started again after a
back-off, the others untouched.

The back-off doubles from FIRST_DELAY to MAX_DELAY while a child keeps exiting soon after its
start, and starts over once it stayed up STABLE_AFTER seconds. Every exit and every restart is a
line on `up`'s stderr; a child that exited CRASH_LOOP times in a row soon after starting is
called a crash loop in that line (and in every one after), so that a child failing for good
never restarts silently: `up` keeps trying every MAX_DELAY seconds, as systemd's
Restart=on-failure would, and says so each time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from itilflow.health import LogWatch

FIRST_DELAY = 1.0
MAX_DELAY = 60.0
# A child that ran this long before it exited was healthy: its next restart waits FIRST_DELAY.
STABLE_AFTER = 120.0
# Exits in a row, each within STABLE_AFTER of its start, that make a crash loop.
CRASH_LOOP = 5


@dataclass
class Backoff:
    """One child's restarts: how long to wait before the next one."""

    first: float = FIRST_DELAY
    most: float = MAX_DELAY
    stable_after: float = STABLE_AFTER
    # Exits in a row, each soon after its start.
    quick_exits: int = 0
    # Restarts since `up` started the child (said in the log line).
    restarts: int = 0

    def after_exit(self, uptime: float) -> float:
        """The delay before restarting a child that exited after `uptime` seconds."""
        if uptime >= self.stable_after:
            self.quick_exits = 0
        self.quick_exits += 1
        self.restarts += 1
        return min(self.first * 2 ** (self.quick_exits - 1), self.most)

    @property
    def crash_loop(self) -> bool:
        return self.quick_exits >= CRASH_LOOP


def exit_line(name: str, message: str, backoff: Backoff, delay: float) -> str:
    """What `up` says when a child exited: `message` (which child, its exit code, its
    traceback, its log), then when it tries again."""
    line = f"{message}; restarting it in {delay:.0f} s (restart {backoff.restarts})"
    if backoff.crash_loop:
        line += (
            f"; CRASH LOOP: {name} exited {backoff.quick_exits} times in a row within "
            f"{backoff.stable_after:.0f} s of starting, fix the cause (up keeps trying every "
            f"{backoff.most:.0f} s at most)"
        )
    return line


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    # A Prefect worker finishes its current runs on the first SIGTERM and exits on the second.
    terms: int = 1
    grace: float = 15.0
    # Its log, and where this start of it began writing there (the logs are appended to).
    log: Path | None = None
    log_offset: int = 0
    # How it was started, to start it again the same way.
    args: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    # Leave what is left of its process group when it exits (a worker's runs finish alone).
    keep_group: bool = False
    started_at: float = field(default_factory=time.monotonic)
    backoff: Backoff = field(default_factory=Backoff)
    # When it exited: when to start it again (time.monotonic()).
    restart_at: float | None = None

    def exit_message(self) -> str:
        """Which child ended, how, and where to look."""
        message = f"{self.name} exited with {self.process.returncode}"
        if self.log is None:
            return message
        watch = LogWatch(self.name, self.log, self.log_offset)
        found = watch.new_tracebacks() + watch.final_tracebacks()
        if found:
            message += f" after a traceback ({found[-1]})"
        return f"{message}; see {self.log}"

    def exited(self, now: float) -> str | None:
        """When the child has just been found dead: schedule its restart and say so. What is
        left of its process group goes first (`prefect server start` serves from a uvicorn
        child that would keep the port), unless `keep_group` (a worker's flow runs)."""
        if self.restart_at is not None or self.process.poll() is None:
            return None
        if not self.keep_group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        delay = self.backoff.after_exit(now - self.started_at)
        self.restart_at = now + delay
        return exit_line(self.name, self.exit_message(), self.backoff, delay)

    def restart_due(self, now: float) -> bool:
        return self.restart_at is not None and now >= self.restart_at
