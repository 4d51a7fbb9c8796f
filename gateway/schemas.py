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
