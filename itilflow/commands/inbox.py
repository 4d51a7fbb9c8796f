"""`itilflow inbox link|code`: read the demo inbox's mails (data/demo-inbox/mail/*.eml) as an
approver reads theirs, so the README's walk-through can approve a change from a shell.

`link` prints the approval link mailed to an approver for a change; `code` prints the one-time
code the link's page mailed them. Both wait a while for the mail to arrive (the runner sends
approval requests within seconds of a submission). Nothing here decides anything: the link's
page does, as it does for a person.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import re
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from itilflow.commands.client import ClientError, client_settings, run_client

# The English and the Chinese code mail put the code after a colon on a line of its own.
CODE_LINE = re.compile(r"^(?:Your code|验证码)：?:?\s*(\d{6,})\s*$", re.MULTILINE)


def inbox_mails(folder: Path, to: str) -> list[EmailMessage]:
    """The mails to `to` in the demo inbox, newest first (the files are numbered)."""
    found = []
    for path in sorted(folder.glob("*.eml"), reverse=True):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if to.lower() in str(message.get("To", "")).lower():
            found.append(message)  # type: ignore[arg-type]
    return found


def plain_text(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    return body.get_content() if body is not None else ""


def approval_link(message: EmailMessage, change: str, decision: str) -> str | None:
    if change.upper() not in str(message.get("Subject", "")).upper():
        return None
    link = rf"(https?://\S+/approvals/[^\s?]+)\?decision={decision}\b"
    found = re.search(link, plain_text(message))
    return found.group(1) if found else None


def approval_code(message: EmailMessage, change: str) -> str | None:
    if change.upper() not in str(message.get("Subject", "")).upper():
        return None
    found = CODE_LINE.search(plain_text(message))
    return found.group(1) if found else None


def _wait_for(args: argparse.Namespace, read: Any, what: str) -> int:
    folder = client_settings(args).data_dir.resolve() / "demo-inbox" / "mail"
    deadline = time.monotonic() + args.wait
    while True:
        for message in inbox_mails(folder, args.to):
            value = read(message)
            if value:
                print(value)
                return 0
        if time.monotonic() >= deadline:
            raise ClientError(
                f"no {what} for {args.change} to {args.to} in {folder} after {args.wait:g} s"
            )
        time.sleep(0.5)


def cmd_inbox_link(args: argparse.Namespace) -> int:
    return _wait_for(
        args,
        lambda message: approval_link(message, args.change, args.decision),
        f"{args.decision} link",
    )


def cmd_inbox_code(args: argparse.Namespace) -> int:
    return _wait_for(args, lambda message: approval_code(message, args.change), "code")


def add_inbox_commands(sub: Any) -> None:
    inbox = sub.add_parser(
        "inbox", help="read the demo inbox's mails: an approver's link and code (demo mode)"
    )
    inbox_sub = inbox.add_subparsers(dest="inbox_command", required=True)
    link = inbox_sub.add_parser("link", help="print the approval link mailed for a change")
    link.add_argument("change", help="e.g. CHG-000002")
    link.add_argument("--to", required=True, help="the approver's address")
    link.add_argument("--decision", choices=("approve", "reject"), default="approve")
    link.set_defaults(run=run_client(cmd_inbox_link))
    code = inbox_sub.add_parser("code", help="print the newest code mailed for a change")
    code.add_argument("change", help="e.g. CHG-000002")
    code.add_argument("--to", required=True, help="the approver's address")
    code.set_defaults(run=run_client(cmd_inbox_code))
    for command in (link, code):
        command.add_argument(
            "--wait", type=float, default=60, help="seconds to wait for the mail (default 60)"
        )
