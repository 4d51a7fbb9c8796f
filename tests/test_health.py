"""The checks `itilflow up` makes on its children: tracebacks in their logs, and a child that
exits (its exception and log named), on real child processes without a whole stack."""

from __future__ import annotations

import signal
import sys
import time
import traceback
from pathlib import Path

import pytest

from itilflow.health import LogWatch, StackHealth, traceback_summaries
from itilflow.stack import Stack, logged_tracebacks
from tests.conftest import make_settings
from tests.support.smtp import free_port


def formatted(function) -> str:
    try:
        function()
    except BaseException as exc:  # noqa: BLE001
        return "".join(traceback.format_exception(exc))
    raise AssertionError("nothing raised")


def missing_key() -> None:
    raise KeyError("x")


def chained() -> None:
    try:
        missing_key()
    except KeyError as exc:
        raise ValueError("bad setting") from exc


def group() -> None:
    raise ExceptionGroup("two failed", [ValueError("a"), OSError("b")])


def test_each_traceback_is_summarised_by_its_exception_line_and_a_chain_by_its_last():
    text = (
        "INFO started\n"
        + formatted(missing_key)
        + "INFO going on\n"
        + formatted(chained)
        + "WARNING after\n"
        + formatted(group)
        + "INFO end\n"
    )
    assert traceback_summaries(text) == (
        [
            "KeyError: 'x'",
            "ValueError: bad setting",
            "ExceptionGroup: two failed (2 sub-exceptions)",
        ],
        "",
    )
    assert traceback_summaries("INFO nothing wrong\nERROR but no traceback\n") == ([], "")


def test_a_traceback_being_written_is_summarised_once_it_is_complete(tmp_path: Path):
    log = tmp_path / "child.log"
    log.write_text("INFO from an earlier start\n" + formatted(missing_key) + "INFO stopped\n")
    watch = LogWatch("child", log, offset=log.stat().st_size)
    assert watch.new_tracebacks() == []  # what the earlier start wrote is not this one's

    text = formatted(chained)
    cut = text.index("ValueError: bad")
    with log.open("a") as out:
        out.write(text[:cut] + "Value")
    assert watch.new_tracebacks() == []
    with log.open("a") as out:
        out.write(text[cut + len("Value") :] + "INFO next\n")
    assert watch.new_tracebacks() == ["ValueError: bad setting"]
    assert watch.new_tracebacks() == []
    # A finished log: a traceback cut off counts too.
    with log.open("a") as out:
        out.write('Traceback (most recent call last):\n  File "x.py", line 1\n')
    assert logged_tracebacks(tmp_path) == {
        "child.log": [
            "KeyError: 'x'",
            "ValueError: bad setting",
            "(a traceback cut off before its exception)",
        ]
    }


@pytest.fixture
def stack(tmp_path: Path):
    stack = Stack(make_settings(tmp_path / "data"))
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield stack
    stack.stop()
    # stop() ignores both signals while it stops the children, then gives them back: pytest
    # and the children of the next test must not inherit them ignored.
    assert {signum: signal.getsignal(signum) for signum in handlers} == handlers


def test_a_child_that_dies_is_named_with_its_exception_and_its_log(stack: Stack):
    """Issue 13 changed what follows: the stack no longer stops (StackError), `watch` says the
    exit with the next try and starts the child again (tests/faults/test_supervision.py)."""
    (stack.data_dir / "logs").mkdir(parents=True)
    (stack.data_dir / "logs" / "runner.log").write_text(formatted(missing_key))  # an earlier start
    child = stack.start("runner", [sys.executable, "-c", "raise RuntimeError('no database')"])
    child.process.wait(timeout=30)
    said: list[str] = []
    stack.supervise(said.append)
    assert said == [
        f"runner exited with 1 after a traceback (RuntimeError: no database); see {child.log}; "
        "restarting it in 1 s (restart 1)"
    ]


def test_a_traceback_of_a_running_child_is_told_and_the_stack_keeps_running(stack: Stack):
    script = (
        "import sys, time, traceback\n"
        "for _ in range(3):\n"
        "    try:\n        {}['scheduler']\n"
        "    except KeyError:\n        traceback.print_exc()\n"
        "print('still serving', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = stack.start("prefect-server", [sys.executable, "-c", script])
    health: StackHealth = stack.health()
    health.log_every = 0
    said: list[str] = []
    deadline = time.monotonic() + 30
    while not said and time.monotonic() < deadline:
        said = health.check()
        time.sleep(0.2)
    # The same exception three times: told once.
    assert said == [
        f"prefect-server logged a traceback (KeyError: 'scheduler'); see {child.log} "
        "(said once per kind)"
    ]
    assert child.process.poll() is None
    assert health.check(now=time.monotonic() + 20) == []


def test_a_prefect_server_that_does_not_answer_is_told_once(tmp_path: Path):
    port = free_port()
    health = StackHealth(f"http://127.0.0.1:{port}/api", tmp_path / "prefect-server.log")
    said = health.check(now=health.started + health.loop_seconds + 15)
    assert len(said) == 1 and said[0].startswith(
        "could not ask the Prefect server about scheduled runs: "
    )
    assert health.check(now=health.started + 3 * health.loop_seconds) == []
