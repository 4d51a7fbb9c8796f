"""`itilflow db upgrade|current|copy|revision`: the schema's version, and moving an installation.

`itilflow up` runs the same upgrade before it starts anything (`upgrade_before_up`); the other
processes only check the revision and refuse to run on any other (itilflow.models.migrations).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


# Alembic's INFO lines (plugins set up, "Will assume non-transactional DDL", which is not so
# here) are noise in the commands' output: what happened is said in one line.
logging.getLogger("alembic").setLevel(logging.WARNING)


def _engine_of_settings(args: argparse.Namespace) -> Engine:
    from itilflow.cli import _settings
    from itilflow.models import get_engine

    settings = _settings(args)
    assert settings.database_url is not None
    return get_engine(settings.database_url)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from itilflow.models.migrations import SchemaVersionError, upgrade_database_reporting

    try:
        print(upgrade_database_reporting(_engine_of_settings(args)))
    except SchemaVersionError as exc:
        print(f"itilflow db upgrade: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    from itilflow.models.migrations import (
        UPGRADE_HINT,
        current_revision,
        describe,
        head_revision,
        known_revision,
    )

    engine = _engine_of_settings(args)
    current, head = current_revision(engine), head_revision()
    print(f"database: {describe(engine)}")
    print(f"current:  {current or 'none'}")
    print(f"head:     {head}")
    if current == head:
        print("the database is at the code's revision")
        return 0
    if current is not None and not known_revision(current):
        print("the database is NEWER than this itilflow: run the version that migrated it")
    else:
        print(f"the database is behind the code: {UPGRADE_HINT}")
    return 1


def upgrade_before_up(database_url: str) -> None:
    """What `itilflow up` does first: upgrade (or make) the database and say so in one line.
    A database newer than the code raises DatabaseAheadError; `up` then starts nothing."""
    from itilflow.models import get_engine
    from itilflow.models.migrations import upgrade_database_reporting

    print(upgrade_database_reporting(get_engine(database_url)), flush=True)


def cmd_db_revision(args: argparse.Namespace) -> int:
    """Write the next revision (for developers): the models' differences from head, numbered."""
    from alembic import command

    from itilflow.models import get_engine
    from itilflow.models.migrations import _migrating, alembic_config, head_revision

    next_id = f"{int(head_revision()) + 1:04d}"
    with tempfile.TemporaryDirectory() as scratch:
        engine = get_engine(f"sqlite:///{Path(scratch) / 'head.db'}")
        try:
            with _migrating(engine) as connection:
                config = alembic_config(connection=connection)
                command.upgrade(config, "head")
                script = command.revision(
                    config, message=args.message, autogenerate=True, rev_id=next_id
                )
        finally:
            engine.dispose()
    scripts = script if isinstance(script, list) else [script]
    for each in scripts:
        if each is not None:
            print(f"wrote {each.path}: read it, tidy it, and test it on SQLite and PostgreSQL")
    return 0


def _normalise_target(url: str) -> str:
    from sqlalchemy.engine import make_url

    # A bare postgresql:// would ask SQLAlchemy for psycopg2; itilflow installs psycopg 3.
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def cmd_db_copy(args: argparse.Namespace) -> int:
    from itilflow.models import get_engine
    from itilflow.models.copy import CopyError, copy_database
    from itilflow.models.migrations import SchemaVersionError, describe

    source = _engine_of_settings(args)
    target = get_engine(_normalise_target(args.to))
    print(f"copying {describe(source)} to {describe(target)} ...", flush=True)
    try:
        copied = copy_database(source, target)
    except (CopyError, SchemaVersionError) as exc:
        print(f"itilflow db copy: {exc}", file=sys.stderr)
        return 1
    total = sum(entry.target for entry in copied)
    password = " (with the password as you gave it)" if target.url.password else ""
    print(
        f"copied {total} rows in {len(copied)} tables, counts equal. Use it from now on: "
        f"ITILFLOW_DATABASE_URL={describe(target)}{password}"
    )
    return 0


def add_db_commands(subparsers: Any) -> None:
    db = subparsers.add_parser("db", help="the database's schema version; move to PostgreSQL")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser(
        "upgrade",
        help="make or upgrade the database to this version's schema (itilflow up does it too)",
    ).set_defaults(run=cmd_db_upgrade)
    db_sub.add_parser(
        "current", help="the database's revision and the code's (exit 1 when they differ)"
    ).set_defaults(run=cmd_db_current)
    copy = db_sub.add_parser(
        "copy",
        help="copy this installation's database (e.g. SQLite) into an empty one (PostgreSQL)",
    )
    copy.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="the target, e.g. postgresql+psycopg://itilflow:PASSWORD@db.example/itilflow",
    )
    copy.set_defaults(run=cmd_db_copy)
    revision = db_sub.add_parser(
        "revision", help="(developers) write the next migration from the models' changes"
    )
    revision.add_argument("-m", "--message", required=True, help="what the revision changes")
    revision.set_defaults(run=cmd_db_revision)
