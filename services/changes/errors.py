"""Why an approval link, code or form may not decide: each message is shown to the person."""

from __future__ import annotations


class DecisionRefused(ValueError):
    """An approval link or form that may not decide; the reason is shown to the person."""


class WrongCode(DecisionRefused):
    """The code entered does not match; the attempt is counted (the caller commits it)."""

    def __init__(self, message: str, *, attempts_left: int) -> None:
        super().__init__(message)
        self.attempts_left = attempts_left


class CodeNotSent(DecisionRefused):
    """No new code now: one was sent less than `code_resend_after` ago."""


class SegregationRefused(DecisionRefused):
    """The decision would break segregation of duties; nothing decided. The caller rolls back
    and records the refusal (overrides.record_refusal)."""


class LinkLocked(DecisionRefused):
    """The link was asked for more codes than the policy allows: no codes, no decisions.
    `newly` when this call locked it (the caller commits the lock and tells people)."""

    def __init__(self, message: str, *, newly: bool) -> None:
        super().__init__(message)
        self.newly = newly
