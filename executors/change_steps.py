"""A change's implementation steps: what they are, how one runs, and how a plan rolls back.

Pure library code (no engine, no database). A `ChangePlan` is stored as JSON on a change request
and filled from the Prefect UI or the API; its actions are shell commands on the worker's host and
HTTP calls, each with a timeout:

    plan = ChangePlan.model_validate(change.plan)
    outcome = await aexecute_plan(plan, on_event=write_to_timeline)

`arun_action` / `run_action` run one action and never raise for a failed one: a non-zero exit, a
time-out, a refused connection or an unexpected HTTP status is an `ActionResult` with `ok=False`.
They raise only for programming errors (for example `run_action` called inside a running loop).

`aexecute_plan` is the reference run of a plan: backup, steps, verification, and on a failure the
rollback of the completed steps in reverse order, then the rollback's verification. The flow may
call each action as its own task and still reuse this logic, by passing `runner=` (how one action
runs) or by calling `plan_rollback` after a crash.

Decisions:
- A failed step may have partially applied, so its own undo runs too, first. Undo actions must
  therefore tolerate a step that did nothing (restore from the backup, `rm -f`, ...).
- A rollback stops at the first undo that fails (the undos before it may rely on its state), and
  at the first irreversible step (`undo: null` with `irreversible: true`): nothing before such a
  step can be rolled back safely. Both give the outcome "rollback_failed" and list the steps that
  are still applied in `PlanOutcome.not_rolled_back`.
- The rollback's verification runs after every rollback, even a failed one, so whoever picks up a
  "rollback_failed" change sees the system's state.
- Backup, steps and verification stop at their first failure ("on deviation, roll back at once").
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from itilflow import clock

__all__ = [
    "Action",
    "ActionResult",
    "ChangePlan",
    "ChangeStep",
    "HttpAction",
    "NamedAction",
    "Outcome",
    "Phase",
    "PlanEvent",
    "PlanAbandoned",
    "PlanOutcome",
    "ShellAction",
    "aexecute_plan",
    "aroll_back_plan",
    "arun_action",
    "execute_plan",
    "interrupted",
    "plan_rollback",
    "run_action",
]

MAX_TIMEOUT_SECONDS = 3600.0
OUTPUT_LIMIT = 8192
"""Bytes of output kept on a result: the first and the last half, with a marker between."""
HTTP_BODY_LIMIT = 10 * 1024 * 1024
"""Bytes of an HTTP body read at most (`expect_text` is searched in them)."""
KILL_GRACE_SECONDS = 2.0
"""After a time-out the process group gets SIGTERM, then SIGKILL this much later."""
DRAIN_SECONDS = 0.5
"""How long to keep reading output after the command exited (a background child may hold it)."""
REDACT_MIN_LENGTH = 4
"""Env and secret-header values at least this long are replaced by `***` in output and summary."""

_REDACTED = "***"
_SENSITIVE_HEADER = re.compile(r"auth|token|secret|key|cookie|session|password", re.IGNORECASE)
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_NAME = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$")]

Phase = Literal["backup", "step", "verify", "rollback", "rollback_verify"]
Outcome = Literal["successful", "rolled_back", "rollback_failed", "backup_failed"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------------
# Actions


class ShellAction(_Model):
    """A command on the worker's host: `command` runs with `/bin/sh -c`, `argv` without a shell.

    The environment is the worker's, with `env` added on top; `env` values never appear in the
    result's output or summary. stdin is empty; stdout and stderr are captured together.
    """

    kind: Literal["shell"] = "shell"
    command: str | None = Field(default=None, min_length=1)
    argv: list[str] | None = Field(default=None, min_length=1)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=60.0, gt=0, le=MAX_TIMEOUT_SECONDS)
    expect_exit: int = 0

    @model_validator(mode="after")
    def _command_or_argv(self) -> Self:
        if (self.command is None) == (self.argv is None):
            raise ValueError("give exactly one of 'command' (run with /bin/sh -c) or 'argv'")
        return self

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"invalid environment variable name {name!r}")
        return env

    def describe(self) -> str:
        if self.command is not None:
            return self.command
        return " ".join(self.argv or [])


HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
StatusClass = Literal["1xx", "2xx", "3xx", "4xx", "5xx"]


class HttpAction(_Model):
    """An HTTP call; ok when the status is in `expect_status` and the body has `expect_text`.

    The JSON key of the request body is `json` (the attribute is `json_body`). Redirects are not
    followed. Values of headers whose name looks secret (Authorization, *token*, *key*, Cookie...)
    never appear in the result.
    """

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    kind: Literal["http"] = "http"
    method: HttpMethod = "GET"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any | None = Field(default=None, alias="json")
    body: str | None = None
    timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT_SECONDS)
    expect_status: list[Annotated[int, Field(ge=100, le=599)] | StatusClass] = Field(
        default_factory=lambda: ["2xx"], min_length=1
    )
    """Accepted statuses: codes (`404`) or classes (`"2xx"`); the default is any 2xx."""
    expect_text: str | None = Field(default=None, min_length=1)

    @field_validator("method", mode="before")
    @classmethod
    def _upper_method(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise ValueError(f"not a valid URL: {url!r} ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be an http:// or https:// URL with a host, got {url!r}")
        return url

    @field_validator("headers")
    @classmethod
    def _header_values(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"invalid header name {name!r}")
            if any(c in value for c in "\r\n\0"):
                raise ValueError(f"header {name!r} has a line break or NUL in its value")
        return headers

    @model_validator(mode="after")
    def _one_body(self) -> Self:
        if self.json_body is not None and self.body is not None:
            raise ValueError("give at most one of 'json' and 'body'")
        if self.method == "HEAD" and (self.json_body is not None or self.body is not None):
            raise ValueError("a HEAD request has no body")
        return self

    def describe(self) -> str:
        return f"{self.method} {_strip_userinfo(self.url)}"

    def accepts(self, status: int) -> bool:
        return any(
            status == expected if isinstance(expected, int) else f"{status // 100}xx" == expected
            for expected in self.expect_status
        )


Action = Annotated[ShellAction | HttpAction, Field(discriminator="kind")]


class NamedAction(_Model):
    """A backup pre-step or a verification check."""

    name: _NAME
    do: Action


class ChangeStep(_Model):
    """An implementation step and the step that rolls it back.

    A step without an undo must say so with `irreversible: true`; a rollback cannot go past it.
    """

    name: _NAME
    do: Action
    undo: Action | None = None
    irreversible: bool = False

    @model_validator(mode="after")
    def _undo_or_irreversible(self) -> Self:
        if self.undo is None and not self.irreversible:
            raise ValueError(
                f"step {self.name!r} has no undo: give one, or set 'irreversible: true' "
                "(a rollback then cannot go past this step)"
            )
        if self.undo is not None and self.irreversible:
            raise ValueError(f"step {self.name!r} is irreversible but has an undo: drop one")
        return self


class ChangePlan(_Model):
    """Backup pre-steps, implementation steps, verification checks and rollback checks.

    Names are unique within each list (events carry the phase, so a rollback check may reuse a
    verification check's name).
    """

    backup: list[NamedAction] = Field(default_factory=list)
    steps: list[ChangeStep] = Field(min_length=1)
    verify: list[NamedAction] = Field(default_factory=list)
    rollback_verify: list[NamedAction] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        for field_name in ("backup", "steps", "verify", "rollback_verify"):
            seen: set[str] = set()
            for item in getattr(self, field_name):
                if item.name in seen:
                    raise ValueError(f"duplicate name {item.name!r} in {field_name}")
                seen.add(item.name)
        return self

    @property
    def irreversible_steps(self) -> list[str]:
        """Names of the steps that cannot be rolled back (for the risk notice and approvers)."""
        return [step.name for step in self.steps if step.irreversible]

    def step(self, name: str) -> ChangeStep:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"no implementation step named {name!r}")


# ---------------------------------------------------------------------------------------------
# Results


class ActionResult(_Model):
    ok: bool
    summary: str
    """One line for the timeline: `exit 0`, `GET https://x/health -> 200 OK`, `timed out ...`."""
    output: str = ""
    """stdout and stderr interleaved, or the HTTP status line and body; at most ~8 kB."""
    exit_code: int | None = None
    status_code: int | None = None
    timed_out: bool = False
    duration_seconds: float = 0.0
    started_at: datetime
    finished_at: datetime


class PlanEvent(_Model):
    phase: Phase
    name: str
    result: ActionResult


class PlanOutcome(_Model):
    outcome: Outcome
    events: list[PlanEvent]
    """Every finished action, in order."""
    failure: PlanEvent | None = None
    """The failed backup, step or check that stopped the change (None when successful)."""
    not_rolled_back: list[str] = Field(default_factory=list)
    """Implementation steps that remain applied after a failed rollback, latest first."""

    @property
    def ok(self) -> bool:
        return self.outcome == "successful"


# ---------------------------------------------------------------------------------------------
# Running one action


async def arun_action(action: ShellAction | HttpAction) -> ActionResult:
    """Run one action; a failure is an `ActionResult` with `ok=False`, never an exception."""
    if isinstance(action, ShellAction):
        return await _run_shell(action)
    if isinstance(action, HttpAction):
        return await _run_http(action)
    raise TypeError(f"not an action: {action!r}")


def run_action(action: ShellAction | HttpAction) -> ActionResult:
    """Sync twin of `arun_action`, for code without a running event loop."""
    _no_running_loop("run_action", "arun_action")
    return asyncio.run(arun_action(action))


class _Timer:
    def __init__(self) -> None:
        self.started_at = clock.now()
        self._start = time.monotonic()

    def result(self, *, ok: bool, summary: str, **fields: Any) -> ActionResult:
        return ActionResult(
            ok=ok,
            summary=summary,
            duration_seconds=round(time.monotonic() - self._start, 3),
            started_at=self.started_at,
            finished_at=clock.now(),
            **fields,
        )


class _Capture:
    """Keeps the first and the last `limit / 2` bytes of a stream."""

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self._half = limit // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self._half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self._half:
                del self.tail[: len(self.tail) - self._half]

    def text(self, secrets: Iterable[str] = ()) -> str:
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        dropped = self.total - len(self.head) - len(self.tail)
        secrets = _secrets(secrets)
        if dropped <= 0:
            return _redact(head + tail, secrets)
        # A secret cut by the marker would leave a fragment: trim the cut edges by its length.
        edge = max((len(s) for s in secrets), default=0)
        if edge:
            head, tail = head[:-edge] if len(head) > edge else "", tail[edge:]
            dropped += 2 * edge
        marker = f"\n... [{dropped} bytes left out] ...\n"
        return _redact(head, secrets) + marker + _redact(tail, secrets)


def _secrets(values: Iterable[str]) -> list[str]:
    return sorted({v for v in values if len(v) >= REDACT_MIN_LENGTH}, key=len, reverse=True)


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, _REDACTED)
    return text


def _last_line(text: str, limit: int = 200) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""


def _seconds(value: float) -> str:
    return f"{value:g}s"


class _PipeProtocol(asyncio.Protocol):
    def __init__(self, capture: _Capture, closed: asyncio.Future[None]) -> None:
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


async def _run_shell(action: ShellAction) -> ActionResult:
    timer = _Timer()
    secrets = list(action.env.values())
    if action.cwd is not None and not os.path.isdir(action.cwd):
        return timer.result(ok=False, summary=f"working directory does not exist: {action.cwd}")
    argv = ["/bin/sh", "-c", action.command] if action.command is not None else action.argv
    assert argv is not None

    # Our own pipe (not PIPE) so that we can stop reading, and close it, when a background
    # child keeps it open after the command itself exited.
    read_fd, write_fd = os.pipe()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            cwd=action.cwd,
            env={**os.environ, **action.env},
            start_new_session=True,  # its own process group: a time-out kills every child
        )
    except OSError as exc:
        os.close(read_fd)
        return timer.result(ok=False, summary=_redact(f"could not start: {exc}", secrets))
    finally:
        os.close(write_fd)

    loop = asyncio.get_running_loop()
    capture = _Capture()
    closed: asyncio.Future[None] = loop.create_future()
    pipe = os.fdopen(read_fd, "rb", buffering=0)
    transport: asyncio.BaseTransport | None = None
    timed_out = False
    try:
        transport, _ = await loop.connect_read_pipe(lambda: _PipeProtocol(capture, closed), pipe)
        try:
            async with asyncio.timeout(action.timeout):
                await process.wait()
        except TimeoutError:
            timed_out = True
            _kill_group(process.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(KILL_GRACE_SECONDS):
                    await process.wait()
            except TimeoutError:
                pass
            _kill_group(process.pid, signal.SIGKILL)
            await process.wait()
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
    if timed_out:
        summary = f"timed out after {_seconds(action.timeout)}"
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
    if not ok and (line := _last_line(output)):
        summary += f": {line}"
    return timer.result(ok=ok, summary=summary, output=output, exit_code=code)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


async def _run_http(action: HttpAction) -> ActionResult:
    timer = _Timer()
    secrets = [v for k, v in action.headers.items() if _SENSITIVE_HEADER.search(k)]
    url_parts = urlsplit(action.url)
    secrets += [s for s in (url_parts.password,) if s]
    what = action.describe()
    request: dict[str, Any] = {"headers": action.headers}
    if action.json_body is not None:
        request["json"] = action.json_body
    elif action.body is not None:
        request["content"] = action.body.encode()

    capture = _Capture()
    body = bytearray()
    cut = False
    try:
        # httpx's timeout is per operation; the outer one bounds the whole call.
        async with asyncio.timeout(action.timeout):
            async with httpx.AsyncClient(timeout=action.timeout, follow_redirects=False) as client:
                async with client.stream(action.method, action.url, **request) as response:
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > HTTP_BODY_LIMIT:
                            del body[HTTP_BODY_LIMIT:]
                            cut = True
                            break
    except (TimeoutError, httpx.TimeoutException):
        summary = f"{what}: timed out after {_seconds(action.timeout)}"
        return timer.result(ok=False, summary=_redact(summary, _secrets(secrets)), timed_out=True)
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError):
            reason = f"could not connect: {_os_reason(exc) or reason}"
        summary = f"{what}: {reason}"
        return timer.result(ok=False, summary=_redact(summary, _secrets(secrets)))

    status = response.status_code
    text = bytes(body).decode(response.charset_encoding or "utf-8", errors="replace")
    capture.feed(f"HTTP {status} {response.reason_phrase}\n".encode())
    capture.feed(text.encode())
    output = capture.text(secrets)
    if cut:
        output += f"\n[body longer than {HTTP_BODY_LIMIT} bytes; the rest was not read]"
    summary = f"{what} -> {status} {response.reason_phrase}".rstrip()
    ok = True
    if not action.accepts(status):
        ok = False
        summary += f", expected {' or '.join(str(e) for e in action.expect_status)}"
    if action.expect_text is not None and action.expect_text not in text:
        ok = False
        summary += f", body does not contain {action.expect_text!r}"
    return timer.result(
        ok=ok, summary=_redact(summary, _secrets(secrets)), output=output, status_code=status
    )


def _os_reason(exc: BaseException) -> str | None:
    """The innermost OS error's text ("Connection refused"), which httpx wraps in generic ones."""
    reason = None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            # asyncio words a refusal "Connect call failed (...)": name the errno instead.
            by_errno = not isinstance(current, socket.gaierror) and current.errno
            reason = os.strerror(current.errno) if by_errno else current.strerror
        current = current.__cause__ or current.__context__
    return reason


def _no_running_loop(name: str, async_name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(f"{name}() called inside a running event loop: await {async_name}()")


# ---------------------------------------------------------------------------------------------
# Running a plan

EventHook = Callable[[Phase, str, ActionResult | None], Awaitable[None] | None]
"""Called with `result=None` when an action starts and with its result when it ends."""
Runner = Callable[[Phase, str, ShellAction | HttpAction], Awaitable[ActionResult]]
"""Runs one action of a plan; the default is `arun_action`. A flow passes one that calls a task."""


def plan_rollback(plan: ChangePlan, completed: Iterable[str]) -> list[ChangeStep]:
    """The steps to roll back, latest first, for the implementation steps in `completed`.

    `completed` names the steps that ran (the failed one included: it may have partially
    applied). The list follows the plan's order reversed, whatever the order of `completed`, and
    keeps irreversible steps (their `undo` is None): a rollback stops at the first of them, and
    every step from there on stays applied.
    """
    done = set(completed)
    unknown = done - {step.name for step in plan.steps}
    if unknown:
        raise ValueError(f"not implementation steps of this plan: {sorted(unknown)}")
    return [step for step in reversed(plan.steps) if step.name in done]


class PlanAbandoned(Exception):
    """Raised by a runner when this run may no longer touch the change (another run took it
    over after this one was declared lost): the plan stops at once, without a rollback."""


async def aexecute_plan(
    plan: ChangePlan,
    *,
    on_event: EventHook | None = None,
    runner: Runner | None = None,
) -> PlanOutcome:
    """Backup, steps, verification; on a failure, roll back and verify the rollback.

    Outcomes: "successful"; "backup_failed" (no step ran, nothing to roll back); "rolled_back"
    (a step or a check failed, every undo and every rollback check passed); "rollback_failed"
    (an undo or a rollback check failed, or an irreversible step blocked the rollback).

    An exception from `runner` counts as a failed action (so the rollback still runs), except
    `PlanAbandoned`, which propagates like one from `on_event`. Cancellation propagates at once,
    without a rollback.
    """
    perform, events = _performer(on_event, runner)

    for item in plan.backup:
        event = await perform("backup", item.name, item.do)
        if not event.result.ok:
            return PlanOutcome(outcome="backup_failed", events=events, failure=event)

    failure: PlanEvent | None = None
    completed: list[str] = []
    for step in plan.steps:
        completed.append(step.name)
        event = await perform("step", step.name, step.do)
        if not event.result.ok:
            failure = event
            break
    else:
        for item in plan.verify:
            event = await perform("verify", item.name, item.do)
            if not event.result.ok:
                failure = event
                break
        else:
            return PlanOutcome(outcome="successful", events=events)

    return await _roll_back(plan, completed, failure, perform, events, on_event)


async def aroll_back_plan(
    plan: ChangePlan,
    started: Iterable[str],
    *,
    failure: PlanEvent,
    on_event: EventHook | None = None,
    runner: Runner | None = None,
) -> PlanOutcome:
    """Only the rollback half of `aexecute_plan`: undo the `started` steps (latest first) and
    verify the rollback. For a run that died mid-implementation, `failure` says where."""
    perform, events = _performer(on_event, runner)
    return await _roll_back(plan, list(started), failure, perform, events, on_event)


_Perform = Callable[[Phase, str, ShellAction | HttpAction], Awaitable[PlanEvent]]


def _performer(
    on_event: EventHook | None, runner: Runner | None
) -> tuple[_Perform, list[PlanEvent]]:
    run = runner or _default_runner
    events: list[PlanEvent] = []

    async def perform(phase: Phase, name: str, action: ShellAction | HttpAction) -> PlanEvent:
        await _notify(on_event, phase, name, None)
        timer = _Timer()
        try:
            result = await run(phase, name, action)
        except PlanAbandoned:
            raise
        except Exception as exc:  # a crashed action is a failed action: roll back
            result = timer.result(ok=False, summary=f"error: {type(exc).__name__}: {exc}")
        event = PlanEvent(phase=phase, name=name, result=result)
        events.append(event)
        await _notify(on_event, phase, name, result)
        return event

    return perform, events


async def _roll_back(
    plan: ChangePlan,
    completed: list[str],
    failure: PlanEvent | None,
    perform: _Perform,
    events: list[PlanEvent],
    on_event: EventHook | None,
) -> PlanOutcome:
    rollback_ok = True
    remaining = plan_rollback(plan, completed)
    not_rolled_back: list[str] = []
    for index, step in enumerate(remaining):
        if step.undo is None:
            timer = _Timer()
            result = timer.result(
                ok=False,
                summary=f"step {step.name!r} is irreversible: the rollback stops here",
            )
            event = PlanEvent(phase="rollback", name=step.name, result=result)
            events.append(event)
            await _notify(on_event, "rollback", step.name, result)
        else:
            event = await perform("rollback", step.name, step.undo)
        if not event.result.ok:
            rollback_ok = False
            not_rolled_back = [s.name for s in remaining[index:]]
            break

    for item in plan.rollback_verify:
        event = await perform("rollback_verify", item.name, item.do)
        rollback_ok = rollback_ok and event.result.ok

    return PlanOutcome(
        outcome="rolled_back" if rollback_ok else "rollback_failed",
        events=events,
        failure=failure,
        not_rolled_back=not_rolled_back,
    )


def interrupted(phase: Phase, name: str, reason: str) -> PlanEvent:
    """The event for an action whose run died before it could record a result."""
    now = clock.now()
    return PlanEvent(
        phase=phase,
        name=name,
        result=ActionResult(ok=False, summary=reason, started_at=now, finished_at=now),
    )


def execute_plan(
    plan: ChangePlan,
    *,
    on_event: EventHook | None = None,
    runner: Runner | None = None,
) -> PlanOutcome:
    """Sync twin of `aexecute_plan`, for code without a running event loop."""
    _no_running_loop("execute_plan", "aexecute_plan")
    return asyncio.run(aexecute_plan(plan, on_event=on_event, runner=runner))


async def _default_runner(
    phase: Phase, name: str, action: ShellAction | HttpAction
) -> ActionResult:
    return await arun_action(action)


async def _notify(
    hook: EventHook | None, phase: Phase, name: str, result: ActionResult | None
) -> None:
    if hook is None:
        return
    returned = hook(phase, name, result)
    if inspect.isawaitable(returned):
        await returned
