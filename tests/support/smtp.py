"""A real SMTP server (aiosmtpd, in its own thread) that captures what it is sent.

    with SmtpCapture() as smtp:
        await asend_email(message, to=["a@example.org"], settings=smtp.mail_settings())
        [mail] = smtp.wait_for(1)

It can also answer with an SMTP error (`fail_with("451 4.3.0 try later", at="data")`), offer
AUTH LOGIN/PLAIN (`SmtpCapture(logins={"user": "secret"})`), or be stopped (or never started) so
connections to its port are refused.
`silent_port()` gives a port that accepts TCP and never greets, to test timeouts.
"""

from __future__ import annotations

import email.policy
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, Literal, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from itilflow.notifications import MailSettings

Stage = Literal["mail", "rcpt", "data"]


@dataclass(frozen=True)
class CapturedMail:
    """One delivered message with its SMTP envelope."""

    message: EmailMessage
    mail_from: str
    rcpt_tos: tuple[str, ...]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (aiosmtpd's Controller cannot take port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextmanager
def silent_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A listening port that never answers: the kernel completes the handshake, no greeting."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


class _Handler:
    def __init__(self, capture: SmtpCapture) -> None:
        self._capture = capture

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if reply := self._capture._failure("mail"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if reply := self._capture._failure("rcpt", address):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if reply := self._capture._failure("data"):
            return reply
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = BytesParser(policy=email.policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        self._capture._record(
            CapturedMail(
                message=message,
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
            )
        )
        return "250 Message accepted for delivery"


@dataclass
class _Failure:
    reply: str
    at: Stage
    only_for: frozenset[str] = field(default_factory=frozenset)


class SmtpCapture:
    """A local SMTP server for tests; `port=0` picks a free port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        logins: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._logins = dict(logins or {})
        self._mails: list[CapturedMail] = []
        self._failure_rule: _Failure | None = None
        self._changed = threading.Condition()
        self._controller: Controller | None = None

    # lifecycle -----------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._controller is not None:
            return self
        kwargs: dict[str, Any] = {}
        if self._logins:
            # Tests run without TLS, so AUTH is offered over the plain connection; it stays
            # optional because aiosmtpd warns about a required AUTH without TLS.
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        controller = Controller(_Handler(self), hostname=self.host, port=self.port, **kwargs)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop listening: later connections to `port` are refused."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # behaviour -----------------------------------------------------------------------------------

    def fail_with(
        self, reply: str | None, *, at: Stage = "data", only_for: tuple[str, ...] = ()
    ) -> None:
        """Answer `reply` (e.g. "550 5.1.1 no such user") at a stage; None restores success.

        `only_for` limits an "rcpt" failure to some recipients (partial refusal).
        """
        self._failure_rule = (
            None if reply is None else _Failure(reply, at, frozenset(a.lower() for a in only_for))
        )

    def _failure(self, stage: Stage, address: str | None = None) -> str | None:
        rule = self._failure_rule
        if rule is None or rule.at != stage:
            return None
        if rule.only_for and (address or "").lower() not in rule.only_for:
            return None
        return rule.reply

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if self._logins.get(user) == password:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    # captured mail -------------------------------------------------------------------------------

    def _record(self, mail: CapturedMail) -> None:
        with self._changed:
            self._mails.append(mail)
            self._changed.notify_all()

    @property
    def mails(self) -> list[CapturedMail]:
        """Delivered messages with their envelopes, oldest first."""
        with self._changed:
            return list(self._mails)

    @property
    def messages(self) -> list[EmailMessage]:
        """Delivered messages, parsed with the modern email policy."""
        return [mail.message for mail in self.mails]

    def wait_for(self, n: int, timeout: float = 5.0) -> list[CapturedMail]:
        """Block until at least `n` messages arrived; AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._mails) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {n} message(s) within {timeout}s, got {len(self._mails)}"
                    )
                self._changed.wait(left)
            return list(self._mails)

    def clear(self) -> None:
        with self._changed:
            self._mails.clear()

    def mail_settings(self, **overrides: Any) -> MailSettings:
        """Settings that send here, without TLS; `overrides` replace any field."""
        fields: dict[str, Any] = {"host": self.host, "port": self.port, "timeout": 5.0}
        return MailSettings(**(fields | overrides))
