"""Proactive notices (proactive.yaml): which inspection predictions open one (a disk filling up,
a certificate expiring, inside a horizon), which standard-change template to propose with which
parameters, the window to propose, and where the customer contact is read from; and the pure
decisions taken from them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field, StrictInt, field_validator

from itilflow.policies._base import Name, PolicyModel
from itilflow.policies.change import ChangePolicy
from itilflow.policies.change_windows import next_allowed_start
from itilflow.policies.durations import Duration

Kind = Literal["disk_fill", "certificate_expiry"]
KINDS: tuple[str, ...] = ("disk_fill", "certificate_expiry")
# What a parameter's value may name, put in from the prediction and its CI.
PLACEHOLDERS: tuple[str, ...] = ("ci", "item", "host", "port", "server_name", "mountpoint")
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_ATTRIBUTE = re.compile(r"^attributes\.([A-Za-z0-9_.\-]+)$")


class KindRule(PolicyModel):
    enabled: bool = True
    # A prediction this close (the disk full, the certificate expired) opens a notice.
    horizon: Duration
    # The standard-change template (change.yaml `templates:`) the owner group is asked to run.
    template: Name
    # The template's parameters: literal values, or text with placeholders {ci}, {item}
    # ({mountpoint} or {host}:{port}), {host}, {port}, {server_name}, {mountpoint} and
    # {attributes.KEY} (the CI's attributes). One that cannot be filled in is asked for when
    # the notice is accepted.
    parameters: dict[str, StrictInt | str] = {}

    @field_validator("horizon")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta():
            raise ValueError("expected a duration above zero like '7d'")
        return value

    @field_validator("parameters")
    @classmethod
    def _placeholders(cls, values: dict[str, int | str]) -> dict[str, int | str]:
        for name, value in values.items():
            for found in _PLACEHOLDER.findall(value) if isinstance(value, str) else ():
                if found not in PLACEHOLDERS and not _ATTRIBUTE.match(found):
                    known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                    raise ValueError(
                        f"{name}: unknown placeholder {{{found}}}; expected one of {known} "
                        "or {attributes.KEY}"
                    )
        return values


class WindowRule(PolicyModel):
    """The proposed window: the first instant inside one of change.yaml's maintenance windows
    (outside its refusing freezes) at least `lead_time` from now, the windows read in the CI's
    time zone (`ci`, change.yaml's when the CI has none) or change.yaml's (`change`)."""

    lead_time: Duration = timedelta(hours=1)
    length: Duration = timedelta(hours=2)
    time_zone: Literal["ci", "change"] = "ci"


class CustomerContact(PolicyModel):
    # Where the customer's address is: a CI field (customer_contact) or attributes.KEY.
    email_field: str = Field("customer_contact", pattern=r"^(customer_contact|attributes\..+)$")
    language_field: str = Field(
        "customer_language", pattern=r"^(customer_language|attributes\..+)$"
    )
    # When the CI names no language.
    default_language: Literal["en", "zh_CN"] = "en"
    # False: only the owner group hears of a notice.
    mail: bool = True


class ProactivePolicy(PolicyModel):
    enabled: bool = True
    disk_fill: KindRule = KindRule(
        horizon=timedelta(days=7),
        template="add-disk-space",
        parameters={"host": "{ci}", "volume": "{attributes.volume}", "gigabytes": 20},
    )
    certificate_expiry: KindRule = KindRule(
        horizon=timedelta(days=21),
        template="renew-certificate",
        parameters={"host": "{ci}", "domain": "{server_name}"},
    )
    window: WindowRule = WindowRule()
    customer: CustomerContact = CustomerContact()
    # The owner group's mail.
    language: Literal["en", "zh_CN"] = "en"
    # Apprise tags told of every new notice (empty: mail only).
    notify_tags: list[Name] = []

    def rule(self, kind: str) -> KindRule:
        return self.disk_fill if kind == "disk_fill" else self.certificate_expiry


# --- pure decisions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """When something on a CI runs out: `item` is the mountpoint or host:port."""

    kind: str
    item: str
    at: datetime
    values: dict[str, str]  # placeholders this prediction fills: item, mountpoint, host, ...


def fill_prediction(
    details: Mapping[str, Any], value: float | None, measured_at: datetime
) -> Prediction | None:
    """A filesystem_fill result (hours until full per mountpoint in `details`, the soonest in
    `value`): the soonest mountpoint's moment, or None without a prediction."""
    if value is None or not details:
        return None
    mountpoint = min(details, key=lambda mp: float(details[mp]))
    hours = float(details[mountpoint])
    return Prediction(
        "disk_fill",
        mountpoint,
        measured_at + timedelta(hours=hours),
        {"item": mountpoint, "mountpoint": mountpoint},
    )


def expiry_prediction(
    days_left: float | None, measured_at: datetime, host: str, port: int, server_name: str
) -> Prediction | None:
    """A tls result (days left in `days_left`): when the certificate expires."""
    if days_left is None:
        return None
    item = f"{host}:{port}"
    return Prediction(
        "certificate_expiry",
        item,
        measured_at + timedelta(days=days_left),
        {"item": item, "host": host, "port": str(port), "server_name": server_name},
    )


def inside_horizon(prediction: Prediction, horizon: timedelta, now: datetime) -> bool:
    """Ahead of us and within the horizon: proactive. Already past: the incident process's."""
    return now < prediction.at <= now + horizon


def fill_parameters(
    rule: KindRule, values: Mapping[str, str], attributes: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The template's parameters with the placeholders put in, and the names of those that could
    not be (a CI attribute missing), which are left out."""
    filled: dict[str, Any] = {}
    missing: list[str] = []
    for name, value in rule.parameters.items():
        if not isinstance(value, str):
            filled[name] = value
            continue
        whole = _PLACEHOLDER.fullmatch(value)
        try:
            if whole:  # one placeholder: its value as it is (an attribute may be a number)
                filled[name] = _value_of(whole.group(1), values, attributes)
            else:
                filled[name] = _PLACEHOLDER.sub(
                    lambda m: str(_value_of(m.group(1), values, attributes)), value
                )
        except KeyError:
            missing.append(name)
    return filled, missing


def _value_of(placeholder: str, values: Mapping[str, str], attributes: Mapping[str, Any]) -> Any:
    attribute = _ATTRIBUTE.match(placeholder)
    if attribute:
        found = attributes.get(attribute.group(1))
        if found is None or found == "":
            raise KeyError(placeholder)
        return found
    return values[placeholder]


def proposed_window(
    change: ChangePolicy, rule: WindowRule, ci_zone: str | None, now: datetime
) -> tuple[datetime, datetime, str]:
    """(start, end, the zone the windows were read in): the next allowed start at least
    `lead_time` from now. Raises NoAllowedStart when the policy leaves no time."""
    zone = ci_zone if rule.time_zone == "ci" and ci_zone else change.timezone
    policy = change if zone == change.timezone else change.model_copy(update={"timezone": zone})
    start = next_allowed_start(policy, now + rule.lead_time)
    return start, start + rule.length, zone


__all__ = [
    "KINDS",
    "CustomerContact",
    "KindRule",
    "Prediction",
    "ProactivePolicy",
    "WindowRule",
    "expiry_prediction",
    "fill_parameters",
    "fill_prediction",
    "inside_horizon",
    "proposed_window",
]
