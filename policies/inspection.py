"""Patrol inspection (inspection.yaml): target groups, their checks and thresholds, and the
pure decisions taken from them (a value against its levels, the fill prediction).

A group's `schedule` and `timezone` are the schedule of its deployment `inspection-<group>` in
prefect.yaml; the engine reads prefect.yaml, and a test keeps the two in step.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from itilflow.policies._base import CronLine, Name, PolicyModel, TimeZoneName, plain_list, raise_if
from itilflow.policies.durations import Duration

Status = Literal["ok", "warning", "critical", "error"]
STATUSES: tuple[str, ...] = ("ok", "warning", "critical", "error")
SEVERITY = {"ok": 0, "warning": 1, "critical": 2, "error": 3}

NodeMetric = Literal["cpu", "memory", "filesystem", "filesystem_fill", "load", "systemd"]
NODE_METRICS: tuple[str, ...] = (
    "cpu",
    "memory",
    "filesystem",
    "filesystem_fill",
    "load",
    "systemd",
)
CHECK_TYPES: tuple[str, ...] = ("node_exporter", "promql", "http", "tcp", "tls")
DEFAULT_NAMES = {"node_exporter": "node"}

# Placeholders a check's url may hold for the stack's own addresses, with the values used when
# the loader is given none (the default ports). `load_policies(..., stack_urls=...)` passes the
# running stack's values (Settings.stack_urls), so its own checks follow its ports.
STACK_URL_DEFAULTS: dict[str, str] = {
    "gateway_url": "http://127.0.0.1:8080",
    "prefect_api_url": "http://127.0.0.1:4200/api",
    "node_exporter_url": "http://127.0.0.1:9100",
}
STACK_URLS_CONTEXT = "stack_urls"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def resolve_stack_urls(url: str, values: Mapping[str, str] | None = None) -> str:
    """`url` with its placeholders ({gateway_url}, ...) replaced by `values`, else defaults.
    Raises ValueError naming an unknown placeholder and the known ones."""
    known = {**STACK_URL_DEFAULTS, **(values or {})}

    def value_of(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in known:
            expected = ", ".join("{" + key + "}" for key in known)
            raise ValueError(f"unknown placeholder {match.group(0)!r}; expected one of {expected}")
        return known[name].rstrip("/")

    return _PLACEHOLDER.sub(value_of, url)


class Levels(PolicyModel):
    """A value at or above `warning` is a warning, at or above `critical` critical; a level left
    out is never reached (both out: the value is recorded, never judged)."""

    warning: float | None = None
    critical: float | None = None

    @model_validator(mode="after")
    def _order(self) -> Levels:
        if self.warning is not None and self.critical is not None and self.critical < self.warning:
            raise_if([(("critical",), f"expected at least warning ({self.warning:g})")])
        return self


class LowLevels(PolicyModel):
    """Levels for values where less is worse (days left, time until full): at or below."""

    warning: float | None = None
    critical: float | None = None

    @model_validator(mode="after")
    def _order(self) -> LowLevels:
        if self.warning is not None and self.critical is not None and self.critical > self.warning:
            raise_if([(("critical",), f"expected at most warning ({self.warning:g})")])
        return self


class FillLevels(PolicyModel):
    """Predicted time until a filesystem is full: at or below `warning` / `critical`."""

    warning: Duration | None = timedelta(days=7)
    critical: Duration | None = timedelta(days=1)


class Thresholds(PolicyModel):
    """What a node_exporter check judges; a check's own `thresholds` replace keys of these."""

    cpu_percent: Levels = Levels(warning=85, critical=95)
    memory_percent: Levels = Levels(warning=90, critical=97)
    filesystem_percent: Levels = Levels(warning=85, critical=95)
    # Linear over this target's own filesystem results within `fill_window` (and this one).
    filesystem_full_in: FillLevels = FillLevels()
    fill_window: Duration = timedelta(hours=6)
    # No prediction from results closer together than this (a few seconds of writes say nothing).
    fill_min_span: Duration = timedelta(hours=1)
    load_per_core: Levels = Levels(warning=1.5, critical=3)
    failed_units: Levels = Levels(warning=1, critical=3)


class ThresholdOverrides(PolicyModel):
    cpu_percent: Levels | None = None
    memory_percent: Levels | None = None
    filesystem_percent: Levels | None = None
    filesystem_full_in: FillLevels | None = None
    fill_window: Duration | None = None
    fill_min_span: Duration | None = None
    load_per_core: Levels | None = None
    failed_units: Levels | None = None


class IncidentMapping(PolicyModel):
    """How a failing check becomes an incident (impact x urgency gives the priority)."""

    category: Name = "hardware"
    impact: Name = "medium"
    urgency: Name = "medium"
    # Results that open (or keep open) an incident; `error` means no answer at all.
    open_on: list[Status] = ["critical", "error"]
    # A check back to ok resolves its incident; false: a note on its timeline only.
    resolve_on_recovery: bool = True


class IncidentOverrides(PolicyModel):
    category: Name | None = None
    impact: Name | None = None
    urgency: Name | None = None
    open_on: list[Status] | None = None
    resolve_on_recovery: bool | None = None


class CheckBase(PolicyModel):
    # Unique within the target (default: the type, "node" for node_exporter); results, history
    # and incidents are keyed by target and name, a node_exporter metric as "<name>.<metric>".
    name: Name | None = None
    timeout: Duration | None = None
    retries: int | None = Field(None, ge=0, le=5)
    incident: IncidentOverrides = IncidentOverrides()


class UrlCheck(CheckBase):
    url: str = Field(pattern=r"^https?://")

    @field_validator("url", mode="before")
    @classmethod
    def _stack_urls(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        return resolve_stack_urls(value, (info.context or {}).get(STACK_URLS_CONTEXT))


class NodeExporterCheck(UrlCheck):
    type: Literal["node_exporter"]
    metrics: list[NodeMetric] = list(NODE_METRICS)
    # CPU use is a counter: two scrapes this far apart.
    sample_interval: Duration = timedelta(seconds=2)
    ignore_fstypes: list[str] = [
        "tmpfs",
        "devtmpfs",
        "overlay",
        "squashfs",
        "nsfs",
        "ramfs",
        "autofs",
        "fuse.lxcfs",
    ]
    thresholds: ThresholdOverrides = ThresholdOverrides()


class PromqlCheck(UrlCheck):  # url: the Prometheus server
    type: Literal["promql"]
    query: str = Field(min_length=1)
    # above: a value at or above a level reaches it; below: at or below.
    direction: Literal["above", "below"] = "above"
    warning: float | None = None
    critical: float | None = None
    unit: str = ""
    # An empty answer (no series) means this.
    on_empty: Status = "ok"


class HttpCheck(UrlCheck):
    type: Literal["http"]
    status: int = Field(200, ge=100, le=599)
    max_latency: Duration = timedelta(seconds=2)
    expect_text: str | None = None
    verify: bool = True
    ca_file: str | None = None


class TcpCheck(CheckBase):
    type: Literal["tcp"]
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)


class TlsCheck(CheckBase):
    type: Literal["tls"]
    host: str = Field(min_length=1)
    port: int = Field(443, ge=1, le=65535)
    server_name: str | None = None
    days_before_expiry: LowLevels = LowLevels(warning=21, critical=7)
    verify: bool = True
    ca_file: str | None = None


Check = Annotated[
    NodeExporterCheck | PromqlCheck | HttpCheck | TcpCheck | TlsCheck, Field(discriminator="type")
]


class Target(PolicyModel):
    # The configuration item the incident names (default: the target's name).
    ci: str | None = None
    description: str = ""
    checks: list[Check] = Field(min_length=1)

    @field_validator("checks", mode="before")
    @classmethod
    def _types(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for index, item in enumerate(value):
            if isinstance(item, dict) and item.get("type") not in CHECK_TYPES:
                got = repr(item["type"]) if "type" in item else "nothing"
                problems.append(
                    ((index, "type"), f"expected one of {plain_list(CHECK_TYPES)}, got {got}")
                )
        raise_if(problems)
        return value

    @model_validator(mode="after")
    def _names(self) -> Target:
        seen: dict[str, int] = {}
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for index, check in enumerate(self.checks):
            name = check_name(check)
            if name in seen:
                problems.append(
                    (
                        ("checks", index, "name"),
                        f"{name!r} is already the name of checks[{seen[name]}]; give each "
                        "check of a target its own name",
                    )
                )
            seen[name] = index
        raise_if(problems)
        return self


class TargetGroup(PolicyModel):
    description: str = ""
    # A cron line read in `timezone`; prefect.yaml's deployment `inspection-<group>` carries the
    # same schedule (a test keeps the two in step).
    schedule: CronLine
    timezone: TimeZoneName = "UTC"
    # Checks in flight at once.
    concurrency: int = Field(50, ge=1, le=1000)
    targets: dict[Name, Target] = Field(min_length=1)


class InspectionPolicy(PolicyModel):
    timeout: Duration = timedelta(seconds=5)
    # Further attempts for a check that got no answer (a threshold crossed is not retried).
    retries: int = Field(1, ge=0, le=5)
    retry_delay: Duration = timedelta(seconds=1)
    thresholds: Thresholds = Thresholds()
    incident: IncidentMapping = IncidentMapping()
    groups: dict[Name, TargetGroup] = {}

    @model_validator(mode="after")
    def _unique_targets(self) -> InspectionPolicy:
        owner: dict[str, str] = {}
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for group_name, group in self.groups.items():
            for target in group.targets:
                if target in owner:
                    problems.append(
                        (
                            ("groups", group_name, "targets", target),
                            f"target {target!r} is also in group {owner[target]!r}; a target's "
                            "history and incidents are keyed by its name, so names are unique",
                        )
                    )
                owner.setdefault(target, group_name)
        raise_if(problems)
        return self

    def group(self, name: str) -> TargetGroup:
        if name not in self.groups:
            known = plain_list(sorted(self.groups)) or "none"
            raise ValueError(f"unknown inspection group {name!r}: inspection.yaml has {known}")
        return self.groups[name]

    def thresholds_for(self, check: NodeExporterCheck) -> Thresholds:
        return self.thresholds.model_copy(
            update={k: v for k, v in check.thresholds if v is not None}
        )

    def incident_for(self, check: CheckBase) -> IncidentMapping:
        return self.incident.model_copy(update={k: v for k, v in check.incident if v is not None})

    def timeout_for(self, check: CheckBase) -> timedelta:
        return check.timeout if check.timeout is not None else self.timeout

    def retries_for(self, check: CheckBase) -> int:
        return check.retries if check.retries is not None else self.retries


def check_name(check: CheckBase) -> str:
    """The check's name, by default its type ("node" for node_exporter)."""
    kind: str = check.type  # type: ignore[attr-defined]
    return check.name or DEFAULT_NAMES.get(kind, kind)


# --- pure decisions ------------------------------------------------------------------------------


def judge(value: float, levels: Levels) -> Status:
    """`value` against levels where more is worse."""
    if levels.critical is not None and value >= levels.critical:
        return "critical"
    if levels.warning is not None and value >= levels.warning:
        return "warning"
    return "ok"


def judge_low(value: float, levels: LowLevels | FillLevels) -> Status:
    """`value` against levels where less is worse (durations are compared in seconds)."""

    def limit(level: float | timedelta | None) -> float | None:
        return level.total_seconds() if isinstance(level, timedelta) else level

    critical, warning = limit(levels.critical), limit(levels.warning)
    if critical is not None and value <= critical:
        return "critical"
    if warning is not None and value <= warning:
        return "warning"
    return "ok"


def worst(statuses: Sequence[str]) -> Status:
    return max(statuses, key=lambda s: SEVERITY[s], default="ok")  # type: ignore[return-value]


def seconds_until_full(points: Sequence[tuple[datetime, float]]) -> float | None:
    """Least squares over (time, used percent) points: seconds until 100 % from the last point,
    or None when the fill is not growing or there are fewer than two distinct times."""
    if len(points) < 2:
        return None
    t0 = points[0][0]
    xs = [(at - t0).total_seconds() for at, _ in points]
    ys = [used for _, used in points]
    n = len(points)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    if slope <= 0:
        return None
    return max(0.0, (100.0 - ys[-1]) / slope)


__all__ = [
    "CHECK_TYPES",
    "NODE_METRICS",
    "STATUSES",
    "Check",
    "HttpCheck",
    "IncidentMapping",
    "InspectionPolicy",
    "Levels",
    "NodeExporterCheck",
    "PromqlCheck",
    "Target",
    "TargetGroup",
    "TcpCheck",
    "Thresholds",
    "TlsCheck",
    "check_name",
    "judge",
    "judge_low",
    "seconds_until_full",
    "worst",
]
