"""A mail as the intake reads it, and the pure decisions about it: is it a loop (an
auto-reply, a bounce, one of our own), and which incident does it name.

No I/O: the raw bytes come from the mailbox (tasks/mail/), the decisions from here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parseaddr

# Our own mails carry this header (notifications/mail_thread.py sets it).
ORIGIN_HEADER = "X-Itilflow-Origin"
_OUR_ID = re.compile(r"<itilflow\.(INC-\d+)(?:\.[^@>]*)?@([^>]+)>", re.IGNORECASE)
_REFERENCE_IN_SUBJECT = re.compile(r"\bINC-(\d{1,18})\b", re.IGNORECASE)
_MESSAGE_IDS = re.compile(r"<[^<>\s]+>")
_BOUNCE_SENDERS = ("mailer-daemon", "postmaster")
_AUTO_PRECEDENCE = ("bulk", "junk", "list", "auto_reply")
MAX_SUBJECT = 300
MAX_BODY = 20_000


@dataclass(frozen=True)
class InboundAttachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class InboundMail:
    message_id: str  # the Message-ID, or "sha256:<hex>" of the raw bytes when it has none
    sender: str  # the From address, lower case ("" when there is none)
    sender_name: str
    subject: str
    body: str
    return_path: str | None  # None: no Return-Path header; "": the null sender <>
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # the loop-relevant ones, lower case
    content_type: str = "text/plain"
    attachments: list[InboundAttachment] = field(default_factory=list)


def parse_mail(raw: bytes) -> InboundMail:
    message: EmailMessage = BytesParser(policy=policy.default).parsebytes(raw)  # type: ignore[assignment]
    name, address = parseaddr(_header(message, "From"))
    message_id = _MESSAGE_IDS.search(_header(message, "Message-ID"))
    return_path = _header(message, "Return-Path") if "Return-Path" in message else None
    return InboundMail(
        message_id=message_id.group(0) if message_id else _hash_id(raw),
        sender=address.strip().lower(),
        sender_name=name.strip()[:200],
        subject=" ".join(_header(message, "Subject").split())[:MAX_SUBJECT],
        body=_body(message)[:MAX_BODY],
        return_path=None if return_path is None else parseaddr(return_path)[1],
        in_reply_to=_MESSAGE_IDS.findall(_header(message, "In-Reply-To")),
        references=_MESSAGE_IDS.findall(_header(message, "References")),
        headers={
            key.lower(): _header(message, key)
            for key in ("Auto-Submitted", "Precedence", "X-Autoreply", ORIGIN_HEADER)
            if key in message
        },
        content_type=message.get_content_type(),
        attachments=list(_attachments(message)),
    )


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except (ValueError, IndexError, TypeError):  # a header the parser cannot make sense of
        return ""
    return "" if value is None else str(value).replace("\x00", "")


def _hash_id(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        text = part.get_content()
    except (LookupError, ValueError):  # an unknown charset or a broken transfer encoding
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if part.get_content_subtype() == "html":
        text = re.sub(r"<[^>]*>", " ", text)
    return text.replace("\x00", "").strip()


def _attachments(message: EmailMessage) -> list[InboundAttachment]:
    found = []
    for part in message.iter_attachments():
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue  # an attached message/rfc822: its text is in the body already
        filename = (part.get_filename() or "attachment").replace("\x00", "")
        found.append(InboundAttachment(filename[-255:], part.get_content_type()[:127], data))
    return found


def loop_reason(mail: InboundMail, *, own_addresses: set[str], own_domain: str) -> str | None:
    """Why the intake must not answer or store this mail as a request (the outcome it is
    recorded with), or None: "own" (one of ours came back), "bounce", "auto_reply"."""
    if ORIGIN_HEADER.lower() in mail.headers or mail.sender in own_addresses:
        return "own"
    ours = _OUR_ID.fullmatch(mail.message_id)
    if ours and ours.group(2).lower() == own_domain:
        return "own"
    local = mail.sender.partition("@")[0]
    if (
        mail.return_path == ""
        or not mail.sender
        or local in _BOUNCE_SENDERS
        or mail.content_type == "multipart/report"
    ):
        return "bounce"
    auto = mail.headers.get("auto-submitted", "no").split(";")[0].strip().lower()
    precedence = mail.headers.get("precedence", "").strip().lower()
    if auto != "no" or precedence in _AUTO_PRECEDENCE or "x-autoreply" in mail.headers:
        return "auto_reply"
    return None


def thread_numbers(mail: InboundMail, *, own_domain: str) -> list[str]:
    """The incident numbers our Message-IDs in the mail's In-Reply-To and References name,
    latest first."""
    numbers = []
    for value in reversed(mail.in_reply_to + mail.references):
        match = _OUR_ID.fullmatch(value)
        if match and match.group(2).lower() == own_domain:
            numbers.append(match.group(1).upper())
    return list(dict.fromkeys(numbers))


def subject_numbers(mail: InboundMail) -> list[str]:
    """The incident references in the subject ("Re: [INC-000123] ..."), in order."""
    found = [f"INC-{int(n):06d}" for n in _REFERENCE_IN_SUBJECT.findall(mail.subject)]
    return list(dict.fromkeys(found))


def thread_ids(mail: InboundMail) -> list[str]:
    """Every Message-ID the mail answers, latest first (to look up among the stored mails)."""
    return list(dict.fromkeys(reversed(mail.in_reply_to + mail.references)))
