"""`itilflow oncall who|ics|check`: who is on call, a person's shifts as iCalendar, and the
rotations checked against the directory. They read the configured policies and database (the
API's overrides included) and change nothing; the rules are services/oncall*.py's.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ONCALL_HELP = """\
Rotations are in oncall.yaml (docs/oncall.md); overrides also come from the API. Times are
ISO 8601 ('2026-12-24T03:00+08:00'); without an offset they are read in the group's time zone
(who) or in UTC (ics).
"""


def add_oncall_commands(subparsers: Any) -> None:
    oncall = subparsers.add_parser(
        "oncall", help="who is on call, and people's shifts", description=ONCALL_HELP
    )
    sub = oncall.add_subparsers(dest="oncall_command", required=True)
    who = sub.add_parser("who", help="who is on call for a group now, or --at a time")
    who.add_argument("group")
    who.add_argument("--at", help="a time like '2026-12-24 03:00' (the group's zone) or ISO")
    who.set_defaults(run=cmd_who)
    ics = sub.add_parser("ics", help="print a person's shifts as iCalendar")
    ics.add_argument("user", help="the person's username")
    ics.add_argument("--from", dest="start", help="the first day (default: a week ago)")
    ics.add_argument("--days", type=int, default=90, help="how many days (1-400, default 90)")
    ics.add_argument("--output", type=Path, help="write to this file instead of stdout")
    ics.set_defaults(run=cmd_ics)
    check = sub.add_parser("check", help="check oncall.yaml's people and groups are known")
    check.set_defaults(run=cmd_check)


def _moment(text: str | None, zone: ZoneInfo) -> datetime | None:
    from itilflow.commands.principals import CommandError

    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(f"expected a time like '2026-12-24 03:00', got {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def _run(args: argparse.Namespace, command: Any) -> int:
    from itilflow.cli import _policies, _settings
    from itilflow.commands.principals import CommandError, _session

    try:
        policies = _policies(_settings(args))
        with _session(args) as session:
            return int(command(session, policies.oncall))
    except CommandError as exc:
        print(f"itilflow oncall: {exc}", file=sys.stderr)
        return 2


def cmd_who(args: argparse.Namespace) -> int:
    from itilflow import clock
    from itilflow.services.oncall_overrides import who_is_on_call

    def who(session: Any, policy: Any) -> int:
        schedule = policy.groups.get(args.group)
        zone = ZoneInfo(schedule.timezone if schedule else "UTC")
        at = _moment(args.at, zone) or clock.now()
        resolved = who_is_on_call(session, policy, args.group, at)
        when = f"{at.astimezone(zone):%Y-%m-%d %H:%M} {zone.key}"
        if resolved is None:
            print(f"{args.group} has no rotation in oncall.yaml: on_call reaches its chat tags")
            return 1
        if resolved.person is None or resolved.on_call is None:
            print(f"{args.group} at {when}: nobody ({resolved.problem})")
            return 1
        found, person = resolved.on_call, resolved.person
        why = (
            found.layer if found.source == "rotation" else f"{found.layer}, override {found.source}"
        )
        instead = f", instead of {found.scheduled}" if found.scheduled != found.person else ""
        print(
            f"{args.group} at {when}: {person.name} ({person.username}, "
            f"{person.email or 'no email'}), {why}{instead}"
        )
        return 0

    return _run(args, who)


def cmd_ics(args: argparse.Namespace) -> int:
    from itilflow import clock
    from itilflow.models import Engineer
    from itilflow.services.oncall_feeds import shifts_calendar
    from itilflow.services.oncall_overrides import shifts_for

    def ics(session: Any, policy: Any) -> int:
        from itilflow.commands.principals import CommandError

        if session.get(Engineer, args.user) is None:
            raise CommandError(f"there is no person {args.user!r} in the directory")
        if not 1 <= args.days <= 400:
            raise CommandError(f"--days: expected 1 to 400, got {args.days}")
        start = _moment(args.start, ZoneInfo("UTC")) or clock.now() - timedelta(days=7)
        shifts = shifts_for(session, policy, args.user, start, start + timedelta(days=args.days))
        body = shifts_calendar(shifts, person=args.user, now=clock.now())
        if args.output:
            args.output.write_bytes(body)
            print(f"{args.output}: {len(shifts)} shifts of {args.user}", file=sys.stderr)
        else:
            sys.stdout.write(body.decode())
        return 0

    return _run(args, ics)


def cmd_check(args: argparse.Namespace) -> int:
    from sqlmodel import select

    from itilflow.models import Engineer, Group
    from itilflow.policies.oncall import directory_problems

    def check(session: Any, policy: Any) -> int:
        people = {row.username: row.active for row in session.exec(select(Engineer))}
        groups = [row.name for row in session.exec(select(Group))]
        problems = directory_problems(policy, people, groups)
        for problem in problems:
            print(problem)
        if not problems:
            print(f"oncall.yaml: {len(policy.groups)} group(s), every person and group known")
        return 1 if problems else 0

    return _run(args, check)
