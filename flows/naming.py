"""Flow run names for batches, so that the Prefect UI's run list says which incidents a run
handled: "open INC-000041", "open INC-000041 +11"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect.runtime import flow_run

from itilflow.models import incident_number


def _first_and_count(verb: str, ids: list[int], describe: Callable[[int], str]) -> str:
    if not ids:
        return f"{verb} nothing"
    more = f" +{len(ids) - 1}" if len(ids) > 1 else ""
    return f"{verb} {describe(ids[0])}{more}"


def incidents_run_name(verb: str) -> Callable[[], str]:
    def name() -> str:
        parameters: dict[str, Any] = flow_run.parameters
        ids = parameters.get("incident_ids")
        if ids is None:
            ids = [_field(item, "incident_id") for item in parameters.get("resolutions", [])]
        return _first_and_count(verb, list(ids), incident_number)

    return name


def triggers_run_name(what: str) -> Callable[[], str]:
    def name() -> str:
        count = len(flow_run.parameters.get("trigger_ids", []))
        return f"{count} {what}" if count != 1 else f"1 {what.rstrip('s')}"

    return name


def _field(item: Any, name: str) -> int:
    return int(item[name] if isinstance(item, dict) else getattr(item, name))
