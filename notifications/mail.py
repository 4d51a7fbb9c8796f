"""Email delivery through python-emails' async SMTP path (aiosmtplib underneath)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import make_msgid, parseaddr
from typing import Any

import aiosmtplib
import emails
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from .errors import NotificationError
from .messages import RenderedMessage


class MailSettings(BaseModel):
    """Where and how to send mail. `use_tls` is STARTTLS; `use_ssl` is TLS from the first byte."""

    model_config = ConfigDict(frozen=True)

    host: str = "localhost"
    port: int = Field(default=25, ge=1, le=65535)
    user: str | None = None
    password: SecretStr | None = None
    use_tls: bool = False
    use_ssl: bool = False
    timeout: float = Field(default=10.0, gt=0, description="seconds, per SMTP operation")
    mail_from: str = "itilflow <itilflow@localhost>"

    @field_validator("mail_from")
    @classmethod
    def _has_address(cls, value: str) -> str:
        if "@" not in parseaddr(value)[1]:
            raise ValueError(f"expected 'Name <user@domain>' or 'user@domain', got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_tls_mode(self) -> MailSettings:
        if self.use_tls and self.use_ssl:
            raise ValueError("use_tls (STARTTLS) and use_ssl (implicit TLS) exclude each other")
        return self


@dataclass(frozen=True)
class Attachment:
    """A file sent along with a mail (e.g. a report's PDF)."""

    filename: str
    data: bytes
    mime_type: str = "application/octet-stream"


async def asend_email(
    message: RenderedMessage,
    *,
    to: Sequence[str],
    settings: MailSettings,
    attachments: Sequence[Attachment] = (),
    headers: Mapping[str, str] | None = None,
) -> None:
    """Send `message` (HTML with a plain-text alternative) to every address in `to`, with
    `attachments` as files, and `headers` (a Message-ID among them replaces the generated one:
    mails about an incident carry their thread's, notifications/mail_thread.py).

    Raises ValueError when `to` holds no address, and NotificationError when the server cannot
    be reached, times out, refuses the login, the sender or any recipient, or rejects the data.
    """
    addresses = [to] if isinstance(to, str) else list(to)  # one address given as a plain str
    recipients = [address.strip() for address in addresses if address and address.strip()]
    if not recipients:
        raise ValueError("asend_email needs at least one recipient in `to`")

    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2]
    extra = dict(headers or {})
    mail = emails.html(
        html=message.html,
        text=message.text,
        subject=message.subject,
        mail_from=settings.mail_from,
        # python-emails adds no Message-ID of its own; mail without one scores as spam.
        message_id=extra.pop("Message-ID", None) or make_msgid(domain=domain),
        headers=extra,
    )
    for attachment in attachments:
        mail.attach(
            data=attachment.data, filename=attachment.filename, mime_type=attachment.mime_type
        )
    where = f"SMTP {settings.host}:{settings.port}"
    try:
        response = await mail.send_async(to=recipients, smtp=_smtp_options(settings))
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        # python-emails turns connection errors into a response, but a timeout or a dropped
        # connection in the middle of the dialogue still escapes as an exception.
        raise NotificationError(f"email via {where} failed: {_describe(exc)}") from exc

    # python-emails reports failures in the response instead of raising them.
    if response is None:
        raise NotificationError(f"email via {where} was not sent (no recipients accepted)")
    if not response.success:
        if response.refused_recipients:
            reason = f"every recipient refused: {_refused(response.refused_recipients)}"
        elif response.status_code and response.last_command:
            reason = f"server answered {response.status_code} to {response.last_command.upper()}"
            reason += f": {_text(response.status_text)}"
        elif response.error is not None:
            reason = _describe(response.error)
        else:
            reason = "no reason given"
        raise NotificationError(f"email via {where} failed: {reason}")
    if response.refused_recipients:
        # The others got the mail; a retry resends it to them, but a silently lost recipient
        # (e.g. the on-call engineer) is worse than a duplicate.
        refused = _refused(response.refused_recipients)
        raise NotificationError(f"email via {where} refused for: {refused}")


def _smtp_options(settings: MailSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "timeout": settings.timeout,
        "tls": settings.use_tls,
        "ssl": settings.use_ssl,
    }
    if settings.user:
        options["user"] = settings.user
        options["password"] = settings.password.get_secret_value() if settings.password else ""
    return options


def _refused(recipients: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(
        f"{address} ({code} {_text(text)})" for address, (code, text) in recipients.items()
    )


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None)
    if isinstance(code, int) and message:
        return f"{code} {_text(message)}"
    # python-emails' SMTPConnectNetworkError carries its reason in strerror, str() is empty.
    reason = getattr(exc, "strerror", None) or str(exc)
    number = getattr(exc, "errno", None)
    if isinstance(number, int):
        reason = f"{reason} [{os.strerror(number)}]"
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip()
    return (value or "").strip()
