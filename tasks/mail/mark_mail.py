"""Mark stored mails done in the mailbox."""

from __future__ import annotations

from imap_tools import MailMessageFlags
from prefect import task

from itilflow.policies import DONE_KEYWORD
from itilflow.runtime import runtime
from itilflow.tasks.mail.mailbox import open_mailbox


@task(name="mark-mail", retries=2, retry_delay_seconds=2)
def mark_mail(uids: list[str]) -> int:
    """Set our done keyword (and \\Seen) on the mails stored; only after their transaction
    committed, so a mail is never marked done and lost. Returns how many were marked."""
    if not uids:
        return 0
    with open_mailbox(runtime().policies.mail) as box:
        box.flag(uids, [DONE_KEYWORD, MailMessageFlags.SEEN], True)
    return len(uids)
