"""The email channel (mail.yaml): which mailbox the service address reads, how often, and the
limits that keep a mail loop or a flood out; and the pure decisions taken from it.

Off by default: `enabled: false` until an operator names the mailbox. The password is never in
the YAML: `password_env` names an environment variable, or `password_file` a file, to read it
from when the intake connects.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from itilflow.policies._base import PolicyModel
from itilflow.policies.durations import Duration

# The IMAP keyword the intake sets on a message once it is stored (and searches without).
DONE_KEYWORD = "$Itilflow"


class RateLimit(PolicyModel):
    """At most `mails` mails from one sender are taken within `per`; the rest are recorded as
    refused (a runaway script, or a loop our own checks did not catch)."""

    mails: int = Field(20, ge=1, le=100_000)
    per: Duration = timedelta(hours=1)

    @field_validator("per")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta():
            raise ValueError("expected a duration above zero like '1h'")
        return value


class MailPolicy(PolicyModel):
    enabled: bool = False
    # The service address people write to (the intake's own From: is never taken as a request).
    address: str = "servicedesk@example.org"
    host: str = "localhost"
    port: int = Field(143, ge=1, le=65535)
    # "none" is for a server on loopback only; "starttls" or "ssl" anywhere else.
    security: str = Field("starttls", pattern=r"^(none|starttls|ssl)$")
    user: str = "servicedesk"
    password_env: str | None = "ITILFLOW_MAIL_PASSWORD"
    password_file: Path | None = None
    folder: str = "INBOX"
    # IMAP IDLE when the server offers it (a new mail is read within seconds); otherwise, and
    # as the longest IDLE wait, the mailbox is read every `poll_interval`.
    poll_interval: Duration = timedelta(minutes=1)
    attachment_max_bytes: int = Field(10_000_000, ge=0, le=100_000_000)
    rate_limit: RateLimit = RateLimit()

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if "@" not in value or any(c.isspace() for c in value):
            raise ValueError(f"expected an address like servicedesk@example.org, got {value!r}")
        return value.strip().lower()

    @field_validator("poll_interval")
    @classmethod
    def _poll(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= timedelta(minutes=29):
            # RFC 2177: an IDLE is renewed at least every 29 minutes.
            raise ValueError("expected a duration between '1s' and '29m'")
        return value

    @model_validator(mode="after")
    def _one_password_source(self) -> MailPolicy:
        if self.password_env and self.password_file:
            raise ValueError("expected one of password_env or password_file, not both")
        if self.enabled and not (self.password_env or self.password_file):
            raise ValueError("an enabled mailbox needs password_env or password_file")
        return self


class MailPasswordMissing(RuntimeError):
    """The policy's password source gave nothing: the intake cannot log in."""


def mailbox_password(policy: MailPolicy, environ: dict[str, str] | None = None) -> str:
    """The mailbox password from the variable or file the policy names."""
    environ = dict(os.environ) if environ is None else environ
    if policy.password_file is not None:
        try:
            text = policy.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise MailPasswordMissing(f"mail.yaml password_file: {exc}") from exc
        if text:
            return text
        raise MailPasswordMissing(f"mail.yaml password_file {policy.password_file} is empty")
    value = environ.get(policy.password_env or "", "")
    if not value:
        raise MailPasswordMissing(f"mail.yaml password_env: ${policy.password_env} is not set")
    return value
