"""`itilflow session list|revoke`: the browser sessions of people signed in to the pages.

Writes straight to the database (ITILFLOW_DATABASE_URL or the data folder's), as an admin at the
machine would; what was revoked, and by whom, stays on the session's row.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from itilflow.commands.directory import _engine


def add_session_commands(subparsers: Any) -> None:
    command = subparsers.add_parser(
        "session", help="list or revoke people's browser sessions (docs/security.md, Sign-in)"
    )
    actions = command.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the live sessions (--all: ended ones too)")
    listing.add_argument("--person", help="only this person's sessions")
    listing.add_argument("--all", action="store_true", help="revoked and expired ones too")
    listing.set_defaults(run=cmd_session_list)
    revoking = actions.add_parser("revoke", help="end a session, or every session of a person")
    which = revoking.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="a session's id (from `session list`)")
    which.add_argument("--person", help="every live session of this person")
    revoking.set_defaults(run=cmd_session_revoke)


def _operator() -> str:
    return f"{getpass.getuser()} (cli)"[:64]


def cmd_session_list(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from itilflow.services import signin

    with Session(_engine(args)) as session:
        rows = signin.list_sessions(session=session, person=args.person, live_only=not args.all)
    print(f"{'id':>5}  {'person':<16} {'via':<5} {'client':<16} {'last seen':<20} state")
    for row in rows:
        state = (
            f"revoked by {row.revoked_by}"
            if row.revoked_at
            else f"until {min(row.idle_expires_at, row.expires_at):%Y-%m-%d %H:%M}"
        )
        seen = f"{row.last_seen_at:%Y-%m-%d %H:%M:%S}"
        print(f"{row.id:>5}  {row.person:<16} {row.via:<5} {row.client:<16} {seen:<20} {state}")
    return 0


def cmd_session_revoke(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from itilflow.services import signin

    with Session(_engine(args)) as session:
        if args.person:
            count = signin.revoke_sessions_of(
                session=session, person=args.person, revoked_by=_operator()
            )
            session.commit()
            print(f"revoked {count} session(s) of {args.person}")
            return 0
        row = signin.revoke_session(session=session, session_id=args.id, revoked_by=_operator())
        if row is None:
            print(f"itilflow session revoke: there is no session {args.id}", file=sys.stderr)
            return 1
        session.commit()
        print(f"revoked session {args.id} of {row.person}")
    return 0
