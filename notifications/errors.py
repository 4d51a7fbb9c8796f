"""The one error the senders raise."""

from __future__ import annotations


class NotificationError(RuntimeError):
    """A notification was not delivered (or could not be routed); retrying may help."""
