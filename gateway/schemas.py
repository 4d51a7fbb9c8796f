"""What the API's request and response bodies share: the offset limit and the text checks."""

from __future__ import annotations

import re

# Far past any real page, and inside every database's integers: a larger offset is a 422, not
# an overflow in the driver.
MAX_OFFSET = 1_000_000_000

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


def clean_text(value: str | None) -> str | None:
    """Refuse control characters (a validator's ValueError); strip the rest."""
    if value is None:
        return None
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value.strip()


def email_address(value: str | None) -> str | None:
    if value is not None and not _EMAIL.match(value):
        raise ValueError("is not an email address")
    return value


def refuse_identity_claims(data: object, *names: str) -> object:
    """A body's claim of who acts (`actor`, `requester`) is refused, not ignored: the actor is
    the authenticated principal, and a client that still sends one should hear so (a model's
    `mode="before"` validator; the ValueError is a 422)."""
    if isinstance(data, dict):
        claimed = sorted(name for name in names if name in data)
        if claimed:
            raise ValueError(
                f"{', '.join(claimed)}: not accepted: who acts is the authenticated principal "
                "(the owner of the bearer token)"
            )
    return data
