"""The email channel's figures: how soon IDLE wakes the intake, and how fast mails are stored.

    .venv/bin/python bench/mail_intake.py [--quick]

A throwaway dovecot (tests/support/dovecot.py) on a free loopback port. Printed:
- IDLE wake-up: a mail appended (IMAP APPEND) -> the watcher (dispatch/mail_watch.py) starts its
  read, p50/p95/max over 20 mails (quick: 5), the poll interval set to 29 min so only IDLE
  can wake it; the read itself is a counter here, not the flow;
- store rate: fetched mails parsed and taken (services/mail_intake.take_mail, one transaction
  each, as store-mail does) on a fresh SQLite database, mails/s over 300 new requests and 300
  replies threading onto them (quick: 100 each), and the exactly-once check (incidents ==
  requests, every mail one row).
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import timedelta

from _common import banner, prepare_database, summary, temp_dir


def idle_wakeups(imap, count: int) -> list[float]:
    from itilflow.dispatch.mail_watch import watch_mailbox
    from itilflow.policies import MailPolicy
    from tests.support.mail import make_mail

    policy = MailPolicy(
        enabled=True,
        host=imap.host,
        port=imap.port,
        security="none",
        user=imap.user,
        password_env="BENCH_MAIL_PASSWORD",
        poll_interval=timedelta(minutes=29),
    )
    runs: list[float] = []
    stop = threading.Event()
    watcher = threading.Thread(
        target=watch_mailbox,
        args=(policy, stop),
        kwargs={"run": lambda: runs.append(time.monotonic()) or {}},
    )
    watcher.start()
    delays = []
    try:
        _wait_for(lambda: len(runs) == 1)
        for _ in range(count):
            time.sleep(0.5)  # back in IDLE
            seen = len(runs)
            appended = time.monotonic()
            imap.append(bytes(make_mail()))
            _wait_for(lambda seen=seen: len(runs) > seen)
            delays.append(runs[seen] - appended)
    finally:
        stop.set()
        watcher.join(timeout=15)
    return delays


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("the watcher did not wake within 30 s")
        time.sleep(0.005)


def store_rate(count: int) -> None:
    from sqlmodel import Session, select

    from itilflow.models import Incident, MailMessage, get_engine
    from itilflow.policies import load_policies
    from itilflow.services.mail_intake import Mailbox, take_mail
    from itilflow.services.mail_parse import parse_mail
    from tests.support.mail import make_mail

    url = f"sqlite:///{temp_dir('mail') / 'itilflow.db'}"
    prepare_database(url)
    engine = get_engine(url)
    policies = load_policies()  # one sender a request: the rate limit never bites
    mailbox = Mailbox(
        addresses=frozenset({"servicedesk@desk.example.org"}), domain="desk.example.org"
    )
    requests = [
        bytes(make_mail(sender=f"user{i}@customer.example", subject=f"Request {i}"))
        for i in range(count)
    ]

    def take_all(raws: list[bytes]) -> float:
        began = time.perf_counter()
        for raw in raws:
            with Session(engine) as session:
                take_mail(session, parse_mail(raw), mailbox=mailbox, policies=policies)
                session.commit()
        return time.perf_counter() - began

    opened = take_all(requests)
    replies = [
        bytes(make_mail(sender=f"user{i}@customer.example", subject=f"Re: INC-{i + 1:06d} more"))
        for i in range(count)
    ]
    threaded = take_all(replies)
    again = take_all(requests[: count // 10])  # fetched again after a crash: stored before
    with Session(engine) as session:
        incidents = len(session.exec(select(Incident)).all())
        rows = session.exec(select(MailMessage.outcome)).all()
    print(f"new requests: {count / opened:7.1f} mails/s ({count} in {opened:.2f} s)")
    print(f"replies:      {count / threaded:7.1f} mails/s ({count} in {threaded:.2f} s)")
    print(f"taken again:  {count // 10 / again:7.1f} mails/s (duplicates, nothing stored)")
    print(
        f"exactly once: incidents {incidents} == requests {count}: {incidents == count}; "
        f"rows {len(rows)} == mails {2 * count}: {len(rows) == 2 * count}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    import os

    from tests.support.dovecot import Dovecot

    with Dovecot() as imap:
        os.environ["BENCH_MAIL_PASSWORD"] = imap.password
        banner("IDLE wake-up: mail appended -> the intake starts its read")
        print(summary(idle_wakeups(imap, 5 if args.quick else 20)))
    banner("store rate: parse + take_mail + commit, one transaction a mail (SQLite)")
    store_rate(100 if args.quick else 300)


if __name__ == "__main__":
    main()
