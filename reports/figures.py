"""What a report holds: plain pydantic models, filled by SQL and read by the templates."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SerializeAsAny, computed_field


class Figures(BaseModel):
    model_config = ConfigDict(frozen=True)


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


class Compliance(Figures):
    """Incidents that met or breached a target; `pending` ones have neither yet (still open
    and within the target) and do not count in the rate."""

    met: int = 0
    breached: int = 0
    pending: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rate(self) -> float | None:
        return ratio(self.met, self.met + self.breached)


class SlaMonth(Figures):
    response: Compliance = Compliance()
    resolution: Compliance = Compliance()
    # P1..P4 -> {"response": ..., "resolution": ...}
    by_priority: dict[str, dict[str, Compliance]] = {}


class DurationStats(Figures):
    """Seconds, wall clock; percentiles by nearest rank (no interpolation)."""

    count: int = 0
    median: float | None = None
    p90: float | None = None


class IncidentMonth(Figures):
    month: str
    opened: int = 0
    # P1..P4 and "unclassified" (no priority yet)
    by_priority: dict[str, int] = {}
    sla: SlaMonth = SlaMonth()
    mtta: DurationStats = DurationStats()
    mttr: DurationStats = DurationStats()
    # Standing resolved (or closed) when the report was made.
    resolved: int = 0
    first_contact: int = 0
    # Resolved at least once, and of those reopened at least once.
    ever_resolved: int = 0
    reopened: int = 0
    escalated_incidents: int = 0
    escalations: int = 0
    # Incidents whose escalation chain reached a group lead or a manager.
    hierarchical_escalations: int = 0
    csat_responses: int = 0
    csat_average: float | None = None
    # score -> answers, for every score of the survey scale
    csat_distribution: dict[int, int] = {}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def first_contact_rate(self) -> float | None:
        return ratio(self.first_contact, self.resolved)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reopen_rate(self) -> float | None:
        return ratio(self.reopened, self.ever_resolved)


class Breakdown(Figures):
    """Counts per month (aligned with the report's months, oldest first) for one name."""

    name: str | None
    counts: list[int]


class Availability(Figures):
    ci: str
    # Per month, oldest first; None for a month that has not begun at the report's time.
    downtime: list[float | None]
    availability: list[float | None]


class WhatIf(Figures):
    policy: str
    # Per month, oldest first, under the other SLA policy (the report's own months stay as they
    # are in IncidentMonth.sla).
    sla: list[SlaMonth]


class IncidentSection(Figures):
    months: list[IncidentMonth]
    categories: list[Breakdown]
    cis: list[Breakdown]
    availability: list[Availability]
    what_if: WhatIf | None = None

    @property
    def current(self) -> IncidentMonth:
        return self.months[-1]


class ChangeCounts(Figures):
    """Changes whose implementation finished in a month (successful, rolled_back,
    rollback_failed or backup_failed), counted in the month of their `updated_at`."""

    changes: int = 0
    successful: int = 0
    rolled_back: int = 0
    rollback_failed: int = 0
    backup_failed: int = 0
    emergency: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def success_rate(self) -> float | None:
        return ratio(self.successful, self.changes)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rollback_rate(self) -> float | None:
        return ratio(self.rolled_back + self.rollback_failed, self.changes)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def emergency_rate(self) -> float | None:
        return ratio(self.emergency, self.changes)


class ChangeMonth(ChangeCounts):
    month: str
    # Closed without being implemented (rejected, refused, expired, cancelled) in the month.
    not_implemented: int = 0
    # standard, normal, emergency (always), then any other category found, by name
    by_category: dict[str, ChangeCounts] = {}


class ChangeSection(Figures):
    months: list[ChangeMonth]

    @property
    def current(self) -> ChangeMonth:
        return self.months[-1]


class ProblemMonth(Figures):
    month: str
    opened: int = 0
    closed: int = 0
    # Problems first marked a known error in the month (their timeline's `known_error` entry).
    known_errors: int = 0


class ProblemSection(Figures):
    months: list[ProblemMonth]

    @property
    def current(self) -> ProblemMonth:
        return self.months[-1]


class InspectionCounts(Figures):
    results: int = 0
    ok: int = 0
    warning: int = 0
    critical: int = 0
    error: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failing(self) -> int:
        """Results that are not ok (any other status counts as not ok)."""
        return self.results - self.ok

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pass_rate(self) -> float | None:
        return ratio(self.ok, self.results)


class InspectionMonth(InspectionCounts):
    month: str


class FailingTarget(InspectionCounts):
    target: str


class InspectionSection(Figures):
    months: list[InspectionMonth]
    # The report month's most failing targets (most non-ok results first), at most 5.
    failing_targets: list[FailingTarget]

    @property
    def current(self) -> InspectionMonth:
        return self.months[-1]


class SectionResult(Figures):
    key: str
    status: Literal["ok", "no_data"]
    # Why there is no data (e.g. "table 'change' does not exist yet").
    reason: str | None = None
    data: SerializeAsAny[Figures] | None = None


class Report(Figures):
    period: str
    # month, quarter or year: how long `period` and each of `months` is.
    span: Literal["month", "quarter", "year"] = "month"
    timezone: str
    # Period keys ("2026-10", "2026-Q3" or "2026"), oldest first; the last one is the report's
    # period. Named months as the monthly report was first; a quarterly report's are quarters.
    months: list[str]
    month_starts: list[datetime]
    as_of: datetime
    survey_scale: int
    sections: list[SectionResult]
    what_if_policy: str | None = None

    def section(self, key: str) -> SectionResult:
        for section in self.sections:
            if section.key == key:
                return section
        raise KeyError(f"no section {key!r} in the report")

    @property
    def incidents(self) -> IncidentSection | None:
        data = self.section("incidents").data
        return data if isinstance(data, IncidentSection) else None

    def summary(self) -> dict[str, Any]:
        """The key figures of the report's month (artifact, chat, tests)."""
        section = self.incidents
        if section is None:
            return {"period": self.period, "incidents": None}
        month = section.current
        return {
            "period": self.period,
            "span": self.span,
            "incidents": month.opened,
            "response_compliance": month.sla.response.rate,
            "resolution_compliance": month.sla.resolution.rate,
            "mtta_median": month.mtta.median,
            "mttr_median": month.mttr.median,
            "first_contact_rate": month.first_contact_rate,
            "reopen_rate": month.reopen_rate,
            "csat_average": month.csat_average,
        }
