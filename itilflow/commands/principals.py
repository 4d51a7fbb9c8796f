"""`itilflow token create|list|revoke` and `itilflow role grant|revoke|list`: who may call the API,
and what they may do. They work on the configured database (like `itilflow import`) and record
who ran them as `cli:<OS user>`; the rules are services/principals.py's.
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlmodel import Session

TOKEN_HELP = """\
A token is shown once, when it is made: itilflow keeps only its SHA-256. A person's token works
while the person is active in the directory; any token until it expires or is revoked. The
gateway notices a revocation or a role change within 5 seconds (docs/security.md, Principals).
"""
ROLE_HELP = """\
Roles: reporter (open incidents and changes, read), agent (work incidents and problems),
group_lead, approver, change_manager (edit or cancel anyone's change), admin (everything,
the directory, tokens and roles). Give them to a person, a group (every member) or an
integration.
"""
_DURATION = re.compile(r"^(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


class CommandError(Exception):
    """What was wrong with the command: one line on stderr, exit code 2."""


def operator() -> str:
    """Who ran the command, for created_by / granted_by / revoked_by."""
    return f"cli:{getpass.getuser()}"[:64]


def parse_expiry(text: str | None) -> timedelta | None:
    """`90d`, `12h`, `30m`; None or `never` for a token that does not expire."""
    if text is None or text == "never":
        return None
    match = _DURATION.match(text.strip())
    if not match or int(match[1]) == 0:
        raise CommandError(f"--expires: expected a duration like 90d, 12h or 30m, got {text!r}")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


@contextmanager
def _session(args: argparse.Namespace) -> Iterator[Session]:
    """A transaction on the configured database, at the code's schema revision."""
    from itilflow.cli import _settings
    from itilflow.models import get_engine, session_scope
    from itilflow.models.migrations import SchemaVersionError, check_database

    settings = _settings(args)
    assert settings.database_url is not None
    engine = get_engine(settings.database_url)
    try:
        check_database(engine)
    except SchemaVersionError as exc:
        raise CommandError(str(exc)) from None
    with session_scope(engine) as session:
        yield session


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def cmd_token_create(args: argparse.Namespace) -> int:
    from itilflow.services.principals import create_token

    expires_in = parse_expiry(args.expires)
    kind = "integration" if args.integration else "person"
    with _session(args) as session:
        plain, row = create_token(
            session=session,
            principal=args.name,
            kind=kind,
            created_by=operator(),
            expires_in=expires_in,
            note=args.note or "",
        )
    until = f"expires {_when(row.expires_at)} UTC" if row.expires_at else "does not expire"
    # The token alone on stdout (TOKEN=$(itilflow token create lin)); the rest on stderr.
    print(f"token {row.id} for {kind} {args.name}, {until}; shown this once:", file=sys.stderr)
    print(plain)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from itilflow.services.principals import list_tokens

    with _session(args) as session:
        rows = list_tokens(session=session, principal=args.name)
    header = ("id", "name", "kind", "prefix", "created", "expires", "last used", "revoked", "by")
    lines = [header] + [
        (
            str(row.id),
            row.principal,
            row.kind,
            row.prefix + "...",
            _when(row.created_at),
            _when(row.expires_at),
            _when(row.last_used_at),
            _when(row.revoked_at),
            row.created_by,
        )
        for row in rows
    ]
    _print_table(lines)
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from itilflow.services.principals import revoke_token

    with _session(args) as session:
        row = revoke_token(session=session, token_id=args.id, revoked_by=operator())
        line = f"token {row.id} of {row.kind} {row.principal} revoked {_when(row.revoked_at)} UTC"
    print(line + " (the gateway refuses it within 5 seconds)")
    return 0


def _subject(args: argparse.Namespace) -> tuple[str, str]:
    given = [
        (kind, value)
        for kind, value in (
            ("person", args.person),
            ("group", args.group),
            ("integration", args.integration),
        )
        if value
    ]
    if len(given) != 1:
        raise CommandError("name one subject: a person, or --group G, or --integration I")
    return given[0]


def cmd_role_grant(args: argparse.Namespace) -> int:
    from itilflow.services.principals import grant_role

    kind, subject = _subject(args)
    with _session(args) as session:
        grant = grant_role(
            session=session, role=args.role, subject_kind=kind, subject=subject,
            granted_by=operator(),
        )  # fmt: skip
        line = f"{kind} {subject} has the role {args.role} (granted by {grant.granted_by})"
    print(line)
    return 0


def cmd_role_revoke(args: argparse.Namespace) -> int:
    from itilflow.models.principal import ROLES
    from itilflow.services.principals import revoke_role

    kind, subject = _subject(args)
    if args.role not in ROLES:
        raise CommandError(f"role: expected one of {', '.join(ROLES)}, got {args.role!r}")
    with _session(args) as session:
        removed = revoke_role(session=session, role=args.role, subject_kind=kind, subject=subject)
    if not removed:
        raise CommandError(f"{kind} {subject} has no grant of the role {args.role}")
    print(f"{kind} {subject} no longer has the role {args.role} (revoked by {operator()})")
    return 0


def cmd_role_list(args: argparse.Namespace) -> int:
    from itilflow.services.principals import list_grants

    with _session(args) as session:
        grants = list_grants(session=session)
    lines = [("role", "kind", "subject", "granted", "by")] + [
        (g.role, g.subject_kind, g.subject, _when(g.granted_at), g.granted_by) for g in grants
    ]
    _print_table(lines)
    return 0


def _print_table(lines: list[tuple[str, ...]]) -> None:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def _refusing(name: str, command: Callable[[argparse.Namespace], int]) -> Any:
    """Wrap a command: a refusal is one line on stderr naming what was wrong, exit code 2."""
    from itilflow.services.principals import PrincipalError

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (CommandError, PrincipalError) as exc:
            print(f"itilflow {name}: {exc}", file=sys.stderr)
            return 2

    return run


def add_principal_commands(subparsers: Any) -> None:
    token = subparsers.add_parser(
        "token", help="make, list and revoke API tokens of people and integrations",
        description=TOKEN_HELP,
    )  # fmt: skip
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="a new token; printed once")
    create.add_argument("name", help="a person's username, or an integration's name")
    create.add_argument(
        "--integration", action="store_true", help="for a named integration, not a person"
    )
    create.add_argument("--expires", help="e.g. 90d, 12h, 30m (default: never)")
    create.add_argument("--note", help="what the token is for")
    create.set_defaults(run=_refusing("token create", cmd_token_create))
    listing = token_sub.add_parser("list", help="tokens (never the token itself)")
    listing.add_argument("name", nargs="?", help="only this person's or integration's")
    listing.set_defaults(run=_refusing("token list", cmd_token_list))
    revoke = token_sub.add_parser("revoke", help="revoke a token by its id (token list)")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(run=_refusing("token revoke", cmd_token_revoke))

    role = subparsers.add_parser(
        "role", help="give roles to people, groups and integrations", description=ROLE_HELP
    )
    role_sub = role.add_subparsers(dest="role_command", required=True)
    for verb, command in (("grant", cmd_role_grant), ("revoke", cmd_role_revoke)):
        parser = role_sub.add_parser(verb, help=f"{verb} a role")
        # Checked when it runs (the models are not imported to build the parser).
        parser.add_argument("role", help="reporter, agent, group_lead, approver, ...")
        parser.add_argument("person", nargs="?", help="a person's username")
        parser.add_argument("--group", help="a group of the directory: every member")
        parser.add_argument("--integration", help="an integration's name (its token's name)")
        parser.set_defaults(run=_refusing(f"role {verb}", command))
    role_sub.add_parser("list", help="every grant").set_defaults(
        run=_refusing("role list", cmd_role_list)
    )
