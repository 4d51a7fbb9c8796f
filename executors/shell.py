"""A shell action: the command in its own process group, killed with the group on a time-out."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from itilflow.executors.containment import Account, Containment, ContainmentRefused, private_folder
from itilflow.executors.processes import ProcessLedger
from itilflow.executors.results import (
    ActionResult,
    Capture,
    Timer,
    format_seconds,
    last_line,
    redact,
    secret_values,
)
from itilflow.executors.schema import DRAIN_SECONDS, KILL_GRACE_SECONDS, ShellAction


class _PipeProtocol(asyncio.Protocol):
    def __init__(self, capture: Capture, closed: asyncio.Future[None]) -> None:
        self._capture = capture
        self._closed = closed

    def data_received(self, data: bytes) -> None:
        self._capture.feed(data)

    def eof_received(self) -> bool | None:
        self._done()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._done()

    def _done(self) -> None:
        if not self._closed.done():
            self._closed.set_result(None)


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def run_shell(
    action: ShellAction, containment: Containment | None = None, ledger: ProcessLedger | None = None
) -> ActionResult:
    """Run the command contained: the allowed environment only, as the policy's user, in its
    `cwd` (inside an allowed root) or a private folder removed afterwards. `ledger` keeps its
    process group on disk while it runs (found and killed after a crash)."""
    timer = Timer()
    contained = containment or Containment()
    secrets = [*contained.secrets, *action.env.values()]
    try:
        account = contained.account()
        if action.cwd is not None:
            contained.check_cwd(action.cwd)
    except ContainmentRefused as exc:
        return timer.result(ok=False, summary=redact(f"refused: {exc}", secrets))
    if action.cwd is not None and not os.path.isdir(action.cwd):
        return timer.result(ok=False, summary=f"working directory does not exist: {action.cwd}")
    env = contained.environment_for(action.env, account)
    if action.cwd is not None:
        return await _run(action, timer, action.cwd, env, account, secrets, ledger)
    with private_folder(account) as folder:
        return await _run(action, timer, folder, env, account, secrets, ledger)


async def _run(
    action: ShellAction,
    timer: Timer,
    cwd: str,
    env: dict[str, str],
    account: Account | None,
    secrets: list[str],
    ledger: ProcessLedger | None,
) -> ActionResult:
    argv = ["/bin/sh", "-c", action.command] if action.command is not None else action.argv
    assert argv is not None
    switch: dict[str, Any] = {}
    if account is not None and (account.uid, account.gid) != (os.geteuid(), os.getegid()):
        switch = {"user": account.uid, "group": account.gid, "extra_groups": []}

    # Our own pipe (not PIPE) so that we can stop reading, and close it, when a background
    # child keeps it open after the command itself exited.
    read_fd, write_fd = os.pipe()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            cwd=cwd,
            env=env,
            start_new_session=True,  # its own process group: a time-out kills every child
            **switch,
        )
    except OSError as exc:
        os.close(read_fd)
        return timer.result(ok=False, summary=redact(f"could not start: {exc}", secrets))
    finally:
        os.close(write_fd)
    if ledger is not None:
        try:
            ledger.started(process.pid)
        except OSError as exc:
            # Unrecorded, it could outlive a crash unseen: stopped at once, failed.
            _kill_group(process.pid, signal.SIGKILL)
            os.close(read_fd)
            await process.wait()
            summary = f"could not record its process group: {exc}"
            return timer.result(ok=False, summary=redact(summary, secrets))
    try:
        return await _collect(action, timer, process, read_fd, secrets)
    finally:
        if ledger is not None:
            ledger.ended(process.pid)


async def _collect(
    action: ShellAction,
    timer: Timer,
    process: asyncio.subprocess.Process,
    read_fd: int,
    secrets: list[str],
) -> ActionResult:
    loop = asyncio.get_running_loop()
    capture = Capture()
    closed: asyncio.Future[None] = loop.create_future()
    pipe = os.fdopen(read_fd, "rb", buffering=0)
    transport: asyncio.BaseTransport | None = None
    try:
        transport, _ = await loop.connect_read_pipe(lambda: _PipeProtocol(capture, closed), pipe)
        timed_out = await _wait_or_stop(process, action.timeout)
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                await asyncio.shield(closed)
            left_open = False
        except TimeoutError:
            left_open = True
    except BaseException:
        # Cancelled (or worse): leave nothing running behind us.
        _kill_group(process.pid, signal.SIGKILL)
        raise
    finally:
        if transport is not None:
            transport.close()
        else:
            pipe.close()

    output = capture.text(secrets)
    if left_open:
        output += "\n[output left open by a background process; stopped reading]"
    code = process.returncode
    assert code is not None
    result = _finished(timer, action, code, output, timed_out=timed_out)
    return result.model_copy(update={"summary": redact(result.summary, secret_values(secrets))})


async def _wait_or_stop(process: asyncio.subprocess.Process, timeout: float) -> bool:
    """Wait for the command; past `timeout`, stop its whole process group (TERM, then KILL
    after the grace period). True when it timed out."""
    try:
        async with asyncio.timeout(timeout):
            await process.wait()
        return False
    except TimeoutError:
        pass
    _kill_group(process.pid, signal.SIGTERM)
    try:
        async with asyncio.timeout(KILL_GRACE_SECONDS):
            await process.wait()
    except TimeoutError:
        pass
    _kill_group(process.pid, signal.SIGKILL)
    await process.wait()
    return True


def _finished(
    timer: Timer, action: ShellAction, code: int, output: str, *, timed_out: bool
) -> ActionResult:
    if timed_out:
        summary = f"timed out after {format_seconds(action.timeout)}"
        return timer.result(
            ok=False, summary=summary, output=output, exit_code=code, timed_out=True
        )
    if code < 0:
        summary = f"killed by signal {_signal_name(-code)}"
    elif code == action.expect_exit:
        summary = f"exit {code}"
    else:
        summary = f"exit {code}, expected {action.expect_exit}"
    ok = code == action.expect_exit
    if not ok and (line := last_line(output)):
        summary += f": {line}"
    return timer.result(ok=ok, summary=summary, output=output, exit_code=code)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
