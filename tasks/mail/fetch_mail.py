"""Fetch the mails the intake has not stored yet."""

from __future__ import annotations

from dataclasses import dataclass

from imap_tools import AND
from prefect import task

from itilflow.policies import DONE_KEYWORD
from itilflow.runtime import runtime
from itilflow.tasks.mail.mailbox import open_mailbox

# Mails per flow run: a backlog after an outage is read in runs of this many, not all at once.
BATCH = 50


@dataclass(frozen=True)
class FetchedMail:
    uid: str
    raw: bytes


@task(name="fetch-mail", retries=2, retry_delay_seconds=2)
def fetch_mail(limit: int = BATCH) -> list[FetchedMail]:
    """Up to `limit` mails of the policy's folder without our done keyword, oldest first,
    read without marking them seen (a person reading the mailbox sees what is new to them)."""
    policy = runtime().policies.mail
    with open_mailbox(policy) as box:
        found = box.fetch(AND(no_keyword=DONE_KEYWORD), mark_seen=False, limit=limit, bulk=True)
        return [FetchedMail(message.uid or "", message.obj.as_bytes()) for message in found]
