"""Reading the one-time approval codes the gateway mails, from the real SMTP capture."""

from __future__ import annotations

import re
import time
from email.message import EmailMessage
from typing import Any

import httpx

from tests.support.csrf import post_form
from tests.support.smtp import SmtpCapture

# The English and the Chinese code mail both put the code after a colon on a line of its own.
CODE_LINE = re.compile(r"^(?:Your code|验证码)：?:?\s*(\d{6,})\s*$", re.MULTILINE)


def code_in(message: EmailMessage) -> str | None:
    """The code a mail carries, None when it is not a code mail."""
    body = message.get_body(("plain",))
    match = CODE_LINE.search(body.get_content() if body is not None else "")
    return match.group(1) if match else None


def codes_sent_to(smtp: SmtpCapture, address: str) -> list[str]:
    """Every code mailed to `address`, oldest first."""
    return [
        code
        for mail in smtp.mails
        if address in mail.rcpt_tos and (code := code_in(mail.message)) is not None
    ]


def wait_for_code(smtp: SmtpCapture, address: str, *, nth: int = 1, timeout: float = 15) -> str:
    """The `nth` code mailed to `address` (1 = the first), waiting for it to arrive."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        codes = codes_sent_to(smtp, address)
        if len(codes) >= nth:
            return codes[nth - 1]
        time.sleep(0.05)
    raise AssertionError(f"no code mail number {nth} to {address} within {timeout} s")


def decide_by_link(
    smtp: SmtpCapture, link: str, address: str, decision: str, comment: str = ""
) -> httpx.Response:
    """Decide as the approver at `address` would: press the button on the link's page, read the
    code in the mail, enter it. Returns the page that answers the code."""
    url = link.split("?")[0]
    sent = len(codes_sent_to(smtp, address))
    form = {"decision": decision, "comment": comment}
    with httpx.Client(trust_env=False, timeout=30) as browser:  # keeps the CSRF cookie
        pressed = post_form(browser, url, form)
        assert pressed.status_code == 200, pressed.text
        code = wait_for_code(smtp, address, nth=sent + 1)
        return post_form(browser, url, form | {"code": code})


def make_waiting_change(rt: Any, plan: dict[str, Any], *, risk_level: str | None = None) -> Any:
    """A change awaiting its technical lead (chen or sun), stored with one live link per
    approver: returns the change and the links' tokens by approver."""
    from itilflow.models import ChangeStatus, session_scope
    from itilflow.services import changes

    with session_scope(rt.engine) as session:
        change = changes.submit_change(
            session=session,
            new=changes.NewChange(title="Rotate TLS certificate", plan=plan),
            actor="test",
        )
        change.status = ChangeStatus.awaiting_approval
        if risk_level is not None:
            change.risk_level = risk_level
        tokens = {}
        for approver in ("chen", "sun"):
            request = changes.create_approval_request(
                session=session,
                change=change,
                stage="technical-lead",
                approver=approver,
                policies=rt.policies,
            )
            tokens[approver] = changes.approval_token(
                request, secret=rt.secret, policies=rt.policies
            )
    return change, tokens
