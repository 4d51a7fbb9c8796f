"""The email channel's intake: read the service mailbox, store each new mail exactly once (a new
incident, a reply on the one it names, or a refusal on record), then mark it done there.

One flow run per batch of new mail, started by the mail watcher (dispatch/mail_watch.py) when the
server announces mail (IMAP IDLE) or its poll interval passes: a run only when there is something
to read, instead of a scheduled run every minute that mostly finds nothing.

Exactly once: a mail is marked done in the mailbox only after its transaction committed, and its
Message-ID is unique in the database. A process that dies between fetching and storing stores it
on the next run; one that dies between storing and marking finds it stored and only marks it.
"""

from __future__ import annotations

from prefect import flow

from itilflow.tasks.mail.fetch_mail import BATCH, fetch_mail
from itilflow.tasks.mail.mailbox import offers_idle, open_mailbox
from itilflow.tasks.mail.mark_mail import mark_mail
from itilflow.tasks.mail.store_mail import store_mail

# For the watcher, which keeps its own connection for IDLE.
__all__ = ["offers_idle", "open_mailbox", "read_mailbox"]


@flow(name="read-mailbox", flow_run_name="mailbox", retries=1)
def read_mailbox() -> dict[str, int]:
    """Store the new mails and mark them done; returns how many had each outcome, and
    "more": 1 when a full batch was read (the watcher runs again at once)."""
    fetched = fetch_mail(BATCH)
    stored = store_mail(fetched)
    mark_mail([mail.uid for mail in stored if mail.uid])
    outcomes: dict[str, int] = {}
    for mail in stored:
        outcomes[mail.outcome] = outcomes.get(mail.outcome, 0) + 1
    outcomes["more"] = int(len(fetched) >= BATCH)
    return outcomes
