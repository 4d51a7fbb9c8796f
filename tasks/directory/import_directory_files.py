from __future__ import annotations

from typing import Literal

from prefect import get_run_logger, task

from itilflow.runtime import runtime
from itilflow.services.directory import describe
from itilflow.services.directory_files import Source, import_sources


@task(name="import-directory-files")
def import_directory_files(
    sources: list[Source],
    kind: Literal["groups", "people", "cis"] | None = None,
    dry_run: bool = False,
    deactivate_missing: bool = False,
) -> str:
    """Write the files as one batch (all or nothing); no retry: a bad row stays bad."""
    outcome = import_sources(
        runtime().engine,
        sources,
        kind=kind,
        dry_run=dry_run,
        deactivate_missing=deactivate_missing,
    )
    text = describe(outcome, dry_run=dry_run, limit=200)
    get_run_logger().info("%s", text)
    return text
