"""Flow run names for batches, so that the Prefect UI's run list says which incidents a run
handled: "open INC-000041", "open INC-000041 +11"; the run's tags name every one of them (the
runner sets them when it starts the run)."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from prefect.context import TagsContext
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


P = ParamSpec("P")
R = TypeVar("R")


def steps_untagged(
    body: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """The flow run carries the runner's tags (one per incident of its batch); its task runs go
    without them: Prefect asks its server for a concurrency slot for each tagged task run, a round
    trip per step that a batch's latency would pay."""

    @functools.wraps(body)
    async def untagged(*args: P.args, **kwargs: P.kwargs) -> R:
        with TagsContext(current_tags=set()):
            return await body(*args, **kwargs)

    # The engine validates the parameters from the signature: give it the body's, with its
    # annotations resolved where the body was written, not here.
    untagged.__signature__ = inspect.signature(body, eval_str=True)  # type: ignore[attr-defined]
    untagged.__annotations__ = typing.get_type_hints(body)
    return untagged
