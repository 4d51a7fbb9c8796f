"""Step processes kept on disk: each shell step's process group, so that a stack started again
after a crash finds the steps its lost runs left running (orphans in their own sessions) and
kills them, and never a process that merely got a recycled pid.

One small JSON file a step under a folder of the data folder, written when the step's shell
starts and removed when it ends; what is left there after a crash is what may still run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from itilflow import clock


@dataclass(frozen=True)
class StepProcess:
    """A step's process group as recorded when its shell started."""

    pgid: int
    start_ticks: int
    """The leader's start time (clock ticks since boot, /proc/<pid>/stat): a recycled pid has
    another one."""
    boot_id: str
    host: str
    change_id: int
    run_id: str
    phase: str
    name: str
    started_at: str

    def describe(self) -> str:
        return f"{self.phase} {self.name!r} (process group {self.pgid} on {self.host})"


@dataclass(frozen=True)
class ProcessLedger:
    """Records the process group of one action of one change's run; given to the shell
    executor, which calls `started` and `ended`."""

    folder: Path
    change_id: int
    run_id: str
    phase: str
    name: str

    def started(self, pid: int) -> None:
        record = StepProcess(
            pgid=pid,
            start_ticks=start_ticks(pid) or 0,
            boot_id=boot_id(),
            host=socket.gethostname(),
            change_id=self.change_id,
            run_id=self.run_id,
            phase=self.phase,
            name=self.name,
            started_at=clock.now().isoformat(),
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        path = _path(self.folder, self.change_id, pid)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(record)))
        os.replace(temporary, path)  # never a half-written record

    def ended(self, pid: int) -> None:
        _path(self.folder, self.change_id, pid).unlink(missing_ok=True)


def _path(folder: Path, change_id: int, pgid: int) -> Path:
    return folder / f"{change_id}-{pgid}.json"


def recorded(folder: Path) -> list[StepProcess]:
    """Every step process on record in `folder` (unreadable files are skipped)."""
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            found.append(StepProcess(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return found


def forget(folder: Path, record: StepProcess) -> None:
    _path(folder, record.change_id, record.pgid).unlink(missing_ok=True)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot), None when there is none."""
    stat = _stat_fields(pid)
    return int(stat[19]) if stat else None


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (state is [0], pgrp [2], start [19])."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    return text[text.rfind(")") + 2 :].split()


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat_fields(int(entry.name))
        if stat and stat[0] != "Z" and int(stat[2]) == pgid:
            members.append(int(entry.name))
    return members


def still_running(record: StepProcess) -> bool:
    """Whether the recorded group still runs here, as the same group.

    Another boot, another host: no. The leader alive: only with its recorded start time (else
    the pid was recycled). The leader gone: the group's members keep its id in use, so no
    other process can have taken it; any member left means the step's group runs on."""
    if record.host != socket.gethostname() or record.boot_id != boot_id():
        return False
    leader = _stat_fields(record.pgid)
    if leader is not None and leader[0] != "Z":
        return int(leader[2]) == record.pgid and int(leader[19]) == record.start_ticks
    return bool(group_members(record.pgid))


def kill_group(record: StepProcess) -> bool:
    """SIGKILL the step's whole process group if it is still the recorded one; True if it was."""
    if not still_running(record):
        return False
    try:
        os.killpg(record.pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True
