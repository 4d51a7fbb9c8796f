"""The email channel's test parts: a real dovecot, a policy folder whose mail.yaml reads it,
a runtime and a gateway on them (fixtures, imported by tests/mail/conftest.py and the fault
tests), and raw mails as a reporter's client or a mail server would write them."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

from itilflow import runtime
from itilflow.demo import load_people
from itilflow.policies import default_policy_dir
from itilflow.settings import Settings
from tests.conftest import ALL_TAGS, make_settings, write_apprise_config
from tests.support.dovecot import Dovecot

SERVICE = "servicedesk@desk.example.org"
MAIL_FROM = f"Service desk <{SERVICE}>"


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    with Dovecot() as server:
        yield server


def mail_policy_dir(root: Path, imap: Dovecot, **extra: object) -> Path:
    """The packaged policies with a mail.yaml that reads `imap`'s INBOX."""
    folder = root / "policies"
    folder.mkdir()
    for source in default_policy_dir().iterdir():
        if source.name.endswith(".yaml"):
            (folder / source.name).write_text(source.read_text())
    lines = {
        "enabled": "true",
        "address": SERVICE,
        "host": imap.host,
        "port": str(imap.port),
        "security": "none",
        "user": imap.user,
        "password_env": "ITILFLOW_TEST_MAIL_PASSWORD",
        "poll_interval": "2s",
        **{key: str(value) for key, value in extra.items()},
    }
    (folder / "mail.yaml").write_text("".join(f"{k}: {v}\n" for k, v in lines.items()))
    return folder


@pytest.fixture
def mail_rt(
    tmp_path: Path,
    database_url: str,
    smtp_server,
    http_sink,
    dovecot: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
) -> runtime.Runtime:
    monkeypatch.setenv("ITILFLOW_TEST_MAIL_PASSWORD", dovecot.password)
    settings: Settings = make_settings(
        tmp_path,
        smtp_port=smtp_server.port,
        mail_from=MAIL_FROM,
        policy_dir=mail_policy_dir(tmp_path, dovecot),
        apprise_config=write_apprise_config(tmp_path / "apprise.yaml", http_sink, ALL_TAGS),
    )
    current = runtime.configure(settings)
    load_people(settings)
    return current


def make_mail(
    *,
    sender: str = "Ada Reporter <ada@customer.example>",
    subject: str = "The printer on floor 3 is jammed",
    body: str = "It shows error E42 since this morning.",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    headers: dict[str, str] | None = None,
    attachments: list[tuple[str, bytes]] = (),
    to: str = SERVICE,
) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = subject
    mail["Message-ID"] = message_id or make_msgid(domain="customer.example")
    if in_reply_to:
        mail["In-Reply-To"] = in_reply_to
    if references:
        mail["References"] = " ".join(references)
    for key, value in (headers or {}).items():
        mail[key] = value
    mail.set_content(body)
    for filename, data in attachments:
        mail.add_attachment(data, maintype="application", subtype="octet-stream", filename=filename)
    return mail


def bounce_for(original: EmailMessage) -> bytes:
    """A delivery status notification from a mail server, as RFC 3464 writes it."""
    return (
        "Return-Path: <>\r\n"
        "From: Mail Delivery System <MAILER-DAEMON@mx.customer.example>\r\n"
        f"To: {SERVICE}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: {make_msgid(domain='mx.customer.example')}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        "\r\n--b1\r\nContent-Type: text/plain\r\n\r\n"
        "This is the mail system. Your message could not be delivered.\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.customer.example\r\n\r\n"
        "Final-Recipient: rfc822; nobody@customer.example\r\nAction: failed\r\n"
        "Status: 5.1.1\r\n"
        "--b1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {original['Message-ID']}\r\n"
        "--b1--\r\n"
    ).encode()
