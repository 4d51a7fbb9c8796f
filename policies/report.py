"""The monthly health report (report.yaml): when it runs, for whom, and how it counts."""

from __future__ import annotations

from email.utils import parseaddr
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator

from itilflow.policies._base import CronLine, PolicyModel, Priority, TimeZoneName
from itilflow.policies.routing import Language, Tag

# What report.yaml says when it says nothing; policies/defaults/report.yaml spells the same out.
DEFAULT_SCHEDULE = "0 8 1 * *"
DEFAULT_TIMEZONE = "Asia/Shanghai"


class ReportPolicy(PolicyModel):
    # A cron line (minute hour day month weekday) read in `timezone`; prefect.yaml's deployment
    # `monthly-health-report` carries the same schedule (a test keeps the two in step).
    schedule: CronLine = DEFAULT_SCHEDULE
    # Month boundaries (and the schedule) are read in this time zone.
    timezone: TimeZoneName = DEFAULT_TIMEZONE
    language: Language = "en"
    # Who gets the PDF by email, and the apprise tags that get a summary; empty lists send nothing.
    recipients: list[str] = []
    chat_tags: list[Tag] = []
    # How many earlier months every figure is compared with.
    compare_months: int = Field(6, ge=0, le=24)
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

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
