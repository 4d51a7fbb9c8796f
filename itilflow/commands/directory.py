"""`itilflow import` and `itilflow export`: the team's groups, people and CIs as YAML or CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

IMPORT_HELP = """\
Load groups, people and CIs from YAML (one file with sections groups, people, cis) or CSV (one
file per kind; the kind is told by the columns, or by --kind). All the files are checked first and
written as one batch: one bad row refuses everything, with the file, line and column. Records
are created or updated (only the columns given); running the same file again changes nothing.
Nothing is deleted: records missing from the file are left alone, unless --deactivate-missing
(only for the kinds the files have). Writes straight to the database (ITILFLOW_DATABASE_URL or
the data folder's).
"""

EXPORT_HELP = """\
Print (or write) the directory as YAML (all kinds in one file) or CSV (one kind per file: --kind,
or --output DIR for groups.csv, people.csv and cis.csv). What is exported imports back unchanged.
"""


def add_directory_commands(subparsers: Any) -> None:
    kinds = ["groups", "people", "cis"]
    importer = subparsers.add_parser(
        "import",
        help="load groups, people and CIs from YAML or CSV files (never deletes)",
        description=IMPORT_HELP,
    )
    importer.add_argument("files", nargs="+", metavar="FILE", help="a .yaml/.yml or .csv file")
    importer.add_argument("--kind", choices=kinds, help="the kind of every CSV file given")
    importer.add_argument(
        "--dry-run", action="store_true", help="print what would change and write nothing"
    )
    importer.add_argument(
        "--deactivate-missing",
        action="store_true",
        help="deactivate the records of the files' kinds that the files do not have",
    )
    importer.set_defaults(run=cmd_import)
    exporter = subparsers.add_parser(
        "export", help="print the groups, people and CIs as YAML or CSV", description=EXPORT_HELP
    )
    exporter.add_argument("--format", choices=["yaml", "csv"], default="yaml")
    exporter.add_argument("--kind", choices=kinds, help="only this kind")
    exporter.add_argument(
        "--output", type=Path, help="a file (YAML, or CSV with --kind) or a folder (CSV)"
    )
    exporter.set_defaults(run=cmd_export)


def _engine(args: argparse.Namespace) -> Any:
    """The database, at the code's schema revision: like the gateway and the runner, these
    commands leave upgrading to `itilflow db upgrade` (and `itilflow up`)."""
    from itilflow.models import get_engine
    from itilflow.models.migrations import check_database
    from itilflow.settings import Settings

    overrides = {"data_dir": Path(args.data_dir)} if getattr(args, "data_dir", None) else {}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    assert settings.database_url is not None
    engine = get_engine(settings.database_url)
    check_database(engine)
    return engine


def _schema_refused(command: str, exc: Exception) -> int:
    print(f"itilflow {command}: {exc}", file=sys.stderr)
    return 2


def cmd_import(args: argparse.Namespace) -> int:
    from itilflow.models.migrations import SchemaVersionError
    from itilflow.services.directory import describe
    from itilflow.services.directory_checks import DirectoryError
    from itilflow.services.directory_files import Source, import_sources

    try:
        engine = _engine(args)
    except SchemaVersionError as exc:
        return _schema_refused("import", exc)
    try:
        sources = [Source.from_path(Path(name)) for name in args.files]
        outcome = import_sources(
            engine,
            sources,
            kind=args.kind,
            dry_run=args.dry_run,
            deactivate_missing=args.deactivate_missing,
        )
    except DirectoryError as exc:
        print(f"itilflow import: refused, nothing was written:\n{exc}", file=sys.stderr)
        return 1
    print(describe(outcome, dry_run=args.dry_run, limit=None if args.dry_run else 50))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from itilflow.models.migrations import SchemaVersionError
    from itilflow.services.directory_files import export_rows, to_csv, to_yaml

    try:
        rows = export_rows(_engine(args))
    except SchemaVersionError as exc:
        return _schema_refused("export", exc)
    kinds = [args.kind] if args.kind else ["groups", "people", "cis"]
    if args.format == "yaml":
        text = to_yaml(rows, kinds)
        if args.output:
            args.output.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0
    if args.kind and not (args.output and args.output.is_dir()):
        text = to_csv(rows[args.kind], args.kind)
        if args.output:
            args.output.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0
    if not args.output:
        print(
            "itilflow export: CSV is one file per kind: give --kind, or --output DIR",
            file=sys.stderr,
        )
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        path = args.output / f"{kind}.csv"
        path.write_text(to_csv(rows[kind], kind), encoding="utf-8")
        print(f"{path}: {len(rows[kind])} {kind}")
    return 0
