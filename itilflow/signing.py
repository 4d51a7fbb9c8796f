"""Signed, expiring tokens for links sent by email (surveys now, approvals later).

A token is `base64url(json payload).base64url(hmac-sha256)`; the payload carries its purpose and
expiry, so a survey token can never be used as anything else. Single use is the caller's job,
done atomically in the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any

from itilflow import clock


class BadToken(ValueError):
    """The token is malformed, tampered with, for another purpose or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, body: str) -> str:
    return _b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())


def sign(payload: dict[str, Any], *, secret: str, purpose: str, valid_for: timedelta) -> str:
    expires = clock.now() + valid_for
    body = _b64(
        json.dumps(
            {**payload, "purpose": purpose, "exp": int(expires.timestamp())},
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
    )
    return f"{body}.{_mac(secret, body)}"


def verify(token: str, *, secret: str, purpose: str) -> dict[str, Any]:
    body, sep, mac = token.partition(".")
    if not sep or not body or not mac:
        raise BadToken("the link is incomplete")
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, so a 500).
    if not hmac.compare_digest(mac.encode(), _mac(secret, body).encode()):
        raise BadToken("the link has been altered")
    try:
        payload = json.loads(_unb64(body))
    except ValueError as exc:
        raise BadToken("the link is malformed") from exc
    if payload.get("purpose") != purpose:
        raise BadToken("the link is not for this page")
    if datetime.fromtimestamp(payload.get("exp", 0), clock.now().tzinfo) < clock.now():
        raise BadToken("the link has expired")
    return payload
