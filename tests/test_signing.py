from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from itilflow import clock, signing


def test_a_signed_token_verifies_and_carries_its_payload():
    token = signing.sign({"incident": 7}, secret="s", purpose="survey", valid_for=timedelta(days=1))
    assert signing.verify(token, secret="s", purpose="survey")["incident"] == 7


@pytest.mark.parametrize(
    ("mangle", "secret", "purpose", "says"),
    [
        (lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), "s", "survey", "altered"),
        (lambda t: "x" + t, "s", "survey", "altered"),
        (lambda t: t, "other", "survey", "altered"),
        (lambda t: t, "s", "approval", "not for this page"),
        (lambda t: t.split(".")[0], "s", "survey", "incomplete"),
        (lambda t: "", "s", "survey", "incomplete"),
    ],
    ids=["tampered-mac", "tampered-body", "other-secret", "other-purpose", "no-mac", "empty"],
)
def test_bad_tokens_are_refused(mangle, secret, purpose, says):
    token = signing.sign({"incident": 7}, secret="s", purpose="survey", valid_for=timedelta(days=1))
    with pytest.raises(signing.BadToken, match=says):
        signing.verify(mangle(token), secret=secret, purpose=purpose)


def test_an_expired_token_is_refused():
    clock.freeze(datetime(2026, 1, 1, tzinfo=UTC))
    token = signing.sign(
        {"incident": 7}, secret="s", purpose="survey", valid_for=timedelta(days=14)
    )
    clock.advance(timedelta(days=14, seconds=1))
    with pytest.raises(signing.BadToken, match="expired"):
        signing.verify(token, secret="s", purpose="survey")
