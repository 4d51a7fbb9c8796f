"""The mail watcher: keeps one IMAP connection to the service mailbox and starts a
`read-mailbox` flow run (flows/mail.py) whenever there may be new mail: at start, when the server
announces it (IDLE), and every poll interval at the latest (the only trigger on a server without
IDLE). `itilflow mail-intake` runs it; `itilflow up` starts that when mail.yaml enables it.

A long-running loop rather than a scheduled deployment: IDLE answers within seconds of a mail,
and a flow run is started only when there is something to read (a schedule would make a run a
minute, nearly all of them empty, and still answer a minute late).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from itilflow.flows.mail import offers_idle, open_mailbox, read_mailbox
from itilflow.policies import MailPolicy

log = logging.getLogger("itilflow.mail")

# After a failure (the server away, a refused login): wait, doubling up to this, and try again.
MAX_BACKOFF = 300.0


def drain(run: Callable[[], dict[str, int]] = read_mailbox) -> int:
    """Run the intake until a run reads less than a full batch; returns how many runs."""
    runs = 0
    while True:
        runs += 1
        outcomes = run()
        log.info("mailbox read: %s", outcomes)
        if not outcomes.get("more"):
            return runs


def watch_mailbox(
    policy: MailPolicy,
    stop: threading.Event,
    *,
    run: Callable[[], dict[str, int]] = read_mailbox,
) -> None:
    """Until `stop` is set: drain the mailbox, then wait for the server's word (IDLE) or the
    poll interval; reconnect with back-off when the connection fails."""
    backoff = 1.0
    while not stop.is_set():
        try:
            with open_mailbox(policy) as box:
                idle = offers_idle(box)
                log.info(
                    "watching %s on %s:%s (%s)",
                    policy.folder,
                    policy.host,
                    policy.port,
                    "IDLE" if idle else f"every {policy.poll_interval}",
                )
                while not stop.is_set():
                    drain(run)
                    backoff = 1.0
                    _wait(box, idle, policy.poll_interval.total_seconds(), stop)
        except Exception as exc:  # noqa: BLE001 (a watcher outlives a server's bad minute)
            log.warning("mail intake failed, trying again in %.0f s: %s", backoff, exc)
            stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)


def _wait(box: Any, idle: bool, seconds: float, stop: threading.Event) -> None:
    """Until the server announces a change, `seconds` pass, or `stop` is set. IDLE is renewed
    every few seconds so that a stop is heard quickly."""
    if not idle:
        stop.wait(seconds)
        return
    deadline = time.monotonic() + seconds
    while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
        if box.idle.wait(timeout=min(left, 5.0)):
            return
