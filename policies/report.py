"""The health reports (report.yaml): monthly, quarterly and yearly; when they run, for whom, and
how they count."""

from __future__ import annotations

from datetime import datetime
from email.utils import parseaddr
from zoneinfo import ZoneInfo

from pydantic import Field, ValidationInfo, field_validator

from itilflow.policies._base import CronLine, PolicyModel, Priority, TimeZoneName
from itilflow.policies.routing import Language, Tag

# What report.yaml says when it says nothing; policies/defaults/report.yaml spells the same out.
DEFAULT_SCHEDULE = "0 8 1 * *"
DEFAULT_QUARTERLY_SCHEDULE = "0 8 1 1,4,7,10 *"
DEFAULT_YEARLY_SCHEDULE = "0 8 1 1 *"
DEFAULT_TIMEZONE = "Asia/Shanghai"
# The months a quarter or a year starts with: its report runs on the first day of one of them.
_FIRST_MONTHS = {"quarterly_schedule": {1, 4, 7, 10}, "yearly_schedule": {1}}


class ReportPolicy(PolicyModel):
    # A cron line (minute hour day month weekday) read in `timezone`; prefect.yaml's deployment
    # `monthly-health-report` carries the same schedule (a test keeps the two in step).
    schedule: CronLine = DEFAULT_SCHEDULE
    # The quarterly and yearly reports' schedules (deployments `quarterly-health-report` and
    # `yearly-health-report`, same time zone); each runs on the first day of its period.
    quarterly_schedule: CronLine = DEFAULT_QUARTERLY_SCHEDULE
    yearly_schedule: CronLine = DEFAULT_YEARLY_SCHEDULE
    # Month boundaries (and the schedule) are read in this time zone.
    timezone: TimeZoneName = DEFAULT_TIMEZONE
    language: Language = "en"
    # Who gets the PDF by email, and the apprise tags that get a summary; empty lists send nothing.
    recipients: list[str] = []
    chat_tags: list[Tag] = []
    # How many earlier months every figure is compared with.
    compare_months: int = Field(6, ge=0, le=24)
    # How many earlier quarters (4 reaches the same quarter a year before) and years.
    compare_quarters: int = Field(4, ge=0, le=12)
    compare_years: int = Field(2, ge=0, le=10)
    # Incidents of these priorities on a CI count as downtime of that CI (availability).
    downtime_priorities: list[Priority] = ["P1", "P2"]
    # How many categories / CIs the tables list (the busiest or least available first).
    top: int = Field(10, ge=1, le=100)

    @field_validator("recipients")
    @classmethod
    def _check_recipients(cls, value: list[str]) -> list[str]:
        bad = [address for address in value if "@" not in parseaddr(address)[1]]
        if bad:
            raise ValueError(
                f"expected email addresses like 'Name <user@domain>' or 'user@domain', got {bad!r}"
            )
        return value

    @field_validator("quarterly_schedule", "yearly_schedule")
    @classmethod
    def _check_first_day(cls, value: str, info: ValidationInfo) -> str:
        from cronsim import CronSim

        months = _FIRST_MONTHS[str(info.field_name)]
        runs = CronSim(value, datetime(2026, 1, 1))  # noqa: DTZ001 (the calendar only)
        for _ in range(8):
            run = next(runs)
            if run.day != 1 or run.month not in months:
                first = "January" if months == {1} else "January, April, July and October"
                raise ValueError(
                    f"expected a cron line that runs on the first day of {first} only "
                    f"(the report is of the period just ended), got {value!r} (it runs on "
                    f"{run:%Y-%m-%d})"
                )
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
