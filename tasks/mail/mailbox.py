"""The service mailbox over IMAP (imap-tools), as mail.yaml names it."""

from __future__ import annotations

from imap_tools import BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted

from itilflow.policies import MailPolicy, mailbox_password

_KINDS: dict[str, type[BaseMailBox]] = {
    "none": MailBoxUnencrypted,
    "starttls": MailBoxStartTls,
    "ssl": MailBox,
}


def open_mailbox(policy: MailPolicy, *, timeout: float = 30.0) -> BaseMailBox:
    """A logged-in connection with the policy's folder selected; the caller logs out (use it
    as a context manager)."""
    box = _KINDS[policy.security](policy.host, policy.port, timeout=timeout)  # type: ignore[call-arg]
    return box.login(policy.user, mailbox_password(policy), initial_folder=policy.folder)


def offers_idle(box: BaseMailBox) -> bool:
    return "IDLE" in box.client.capabilities
