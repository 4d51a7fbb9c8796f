"""The mail headers that keep an incident's mails in one thread in the reporter's client, and
tell our own mails apart when they come back to the service mailbox.

Every mail about an incident gets a Message-ID made of the incident's number and the plan's key
(`<itilflow.INC-000123.opened.1a2b3c4d@example.org>`): the same on a retry, and one the mail
intake reads the incident back from when a reply names it in In-Reply-To or References. The
References start with the thread's root (`<itilflow.INC-000123@example.org>`, never sent itself)
and end with the reporter's own mails that opened or joined the incident.
"""

from __future__ import annotations

import hashlib
import re
from email.utils import parseaddr

from sqlmodel import Session

from itilflow.models import incident_number, thread_message_ids
from itilflow.services.mail_parse import ORIGIN_HEADER

# At most this many of the reporter's mails in References (RFC 5322 keeps the thread's first and
# latest; a long thread must not grow the header without end).
_MAX_REFERENCES = 10
# Templates sent by a person, not by the machinery (no Auto-Submitted: the reporter's
# auto-responder may answer them, as it would a colleague's mail).
WRITTEN_BY_A_PERSON = frozenset({"reporter_comment"})


def mail_domain(mail_from: str) -> str:
    return parseaddr(mail_from)[1].rpartition("@")[2].lower() or "localhost"


def message_id(number: str, key: str, domain: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9_-]+", "-", key)[:40]
    digest = hashlib.sha256(f"{number}:{key}".encode()).hexdigest()[:10]
    return f"<itilflow.{number}.{readable}.{digest}@{domain}>"


def thread_root(number: str, domain: str) -> str:
    return f"<itilflow.{number}@{domain}>"


def thread_headers(
    session: Session, incident_id: int, *, key: str, template: str, mail_from: str
) -> dict[str, str]:
    """The headers of the mail `key` about the incident: its Message-ID, its place in the
    thread, and the marks that say it is ours (and, unless a person wrote it, automatic)."""
    number = incident_number(incident_id)
    domain = mail_domain(mail_from)
    theirs = thread_message_ids(session=session, incident_id=incident_id)
    references = [thread_root(number, domain), *theirs[:1], *theirs[1:][-(_MAX_REFERENCES - 2) :]]
    headers = {
        "Message-ID": message_id(number, key, domain),
        "In-Reply-To": theirs[-1] if theirs else references[0],
        "References": " ".join(dict.fromkeys(references)),
        ORIGIN_HEADER: domain,
    }
    if template not in WRITTEN_BY_A_PERSON:
        headers["Auto-Submitted"] = "auto-replied" if theirs else "auto-generated"
    return headers
