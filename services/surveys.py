"""The satisfaction survey's signed link, mailed on resolution and read back by the gateway."""

from __future__ import annotations

from datetime import timedelta

from itilflow import signing

PURPOSE = "survey"
VALID_FOR = timedelta(days=14)


def survey_token(incident_id: int, *, secret: str) -> str:
    return signing.sign(
        {"incident": incident_id}, secret=secret, purpose=PURPOSE, valid_for=VALID_FOR
    )
