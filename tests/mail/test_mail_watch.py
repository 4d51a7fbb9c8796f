"""The watcher wakes on the server's IDLE word, not on its poll interval (the flow it starts is
replaced by a counter: the flow itself is in test_mail_e2e.py)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from itilflow.dispatch.mail_watch import _wait, drain, watch_mailbox
from itilflow.policies import MailPolicy
from tests.support.mail import make_mail


def wait_until(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_new_mail_wakes_the_watcher_through_idle(dovecot, monkeypatch):
    monkeypatch.setenv("ITILFLOW_TEST_MAIL_PASSWORD", dovecot.password)
    policy = MailPolicy(
        enabled=True,
        host=dovecot.host,
        port=dovecot.port,
        security="none",
        user=dovecot.user,
        password_env="ITILFLOW_TEST_MAIL_PASSWORD",
        poll_interval=timedelta(minutes=29),  # only IDLE can wake it within the test
    )
    runs: list[float] = []

    def run() -> dict[str, int]:
        runs.append(time.monotonic())
        return {"more": 0}

    stop = threading.Event()
    watcher = threading.Thread(target=watch_mailbox, args=(policy, stop), kwargs={"run": run})
    watcher.start()
    try:
        assert wait_until(lambda: len(runs) == 1)  # the first read, at start
        time.sleep(0.5)  # into IDLE
        dovecot.append(bytes(make_mail()))
        assert wait_until(lambda: len(runs) == 2), "IDLE did not wake the watcher"
    finally:
        stop.set()
        watcher.join(timeout=15)
    assert not watcher.is_alive()


def test_drain_runs_again_while_a_run_reads_a_full_batch():
    results = iter([{"opened": 50, "more": 1}, {"opened": 3, "more": 0}])
    assert drain(lambda: next(results)) == 2


def test_without_idle_it_waits_the_poll_interval_or_the_stop():
    stop = threading.Event()
    began = time.monotonic()
    _wait(object(), False, 0.3, stop)
    assert time.monotonic() - began >= 0.3
    stop.set()
    began = time.monotonic()
    _wait(object(), False, 60, stop)
    assert time.monotonic() - began < 1
