"""proactive.yaml's pure decisions: predictions from results, the horizon, the template's
parameters from the prediction and the CI, the proposed window; and the loader's checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from itilflow.policies import Policies, PolicyError, load_policies
from itilflow.policies.proactive import (
    KindRule,
    WindowRule,
    expiry_prediction,
    fill_parameters,
    fill_prediction,
    inside_horizon,
    proposed_window,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)  # a Thursday: 20:00 in Shanghai, 13:00 in Berlin


def test_the_soonest_mountpoint_is_the_fill_prediction() -> None:
    found = fill_prediction({"/var": 30.0, "/srv": 5.5}, 5.5, NOW)
    assert found is not None
    assert (found.kind, found.item, found.at) == ("disk_fill", "/srv", NOW + timedelta(hours=5.5))
    assert found.values == {"item": "/srv", "mountpoint": "/srv"}
    assert fill_prediction({}, None, NOW) is None


def test_a_certificate_expires_days_after_the_measurement() -> None:
    found = expiry_prediction(10.5, NOW, "10.0.0.5", 443, "shop.example.com")
    assert found is not None
    assert (found.kind, found.item) == ("certificate_expiry", "10.0.0.5:443")
    assert found.at == NOW + timedelta(days=10.5)
    assert found.values["server_name"] == "shop.example.com"
    assert expiry_prediction(None, NOW, "h", 443, "h") is None


def test_only_a_moment_ahead_and_within_the_horizon_is_proactive() -> None:
    soon = expiry_prediction(10, NOW, "h", 443, "h")
    late = expiry_prediction(30, NOW, "h", 443, "h")
    past = expiry_prediction(-1, NOW, "h", 443, "h")
    assert soon and late and past
    horizon = timedelta(days=21)
    assert inside_horizon(soon, horizon, NOW)
    assert not inside_horizon(late, horizon, NOW)
    assert not inside_horizon(past, horizon, NOW)  # expired: the incident process's


def test_parameters_are_filled_from_the_prediction_and_the_cis_attributes() -> None:
    rule = KindRule(
        horizon=timedelta(days=7),
        template="add-disk-space",
        parameters={
            "host": "{ci}",
            "volume": "{attributes.volume}",
            "gigabytes": "{attributes.grow_by}",
            "note": "grow {mountpoint} on {ci}",
            "fixed": 20,
        },
    )
    values = {"ci": "db-1", "item": "/srv", "mountpoint": "/srv"}
    filled, missing = fill_parameters(rule, values, {"volume": "vg0/data", "grow_by": 50})
    assert filled == {
        "host": "db-1",
        "volume": "vg0/data",
        "gigabytes": 50,  # a whole placeholder keeps the attribute's type
        "note": "grow /srv on db-1",
        "fixed": 20,
    }
    assert missing == []
    filled, missing = fill_parameters(rule, values, {"volume": ""})
    assert missing == ["volume", "gigabytes"] and "volume" not in filled


def test_an_unknown_placeholder_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown placeholder \{disk\}"):
        KindRule(horizon=timedelta(days=1), template="t", parameters={"a": "{disk}"})


def test_the_window_is_the_next_maintenance_window_in_the_cis_zone(defaults: Policies) -> None:
    change = defaults.change  # weekdays 22:00-06:00, weekends all day; Asia/Shanghai
    start, end, zone = proposed_window(change, WindowRule(), "Europe/Berlin", NOW)
    assert zone == "Europe/Berlin"
    assert start == datetime(2026, 12, 3, 21, 0, tzinfo=UTC)  # 22:00 in Berlin tonight
    assert end - start == timedelta(hours=2)
    start, _, zone = proposed_window(change, WindowRule(time_zone="change"), "Europe/Berlin", NOW)
    assert zone == "Asia/Shanghai"
    # 20:00 in Shanghai, an hour's lead: tonight's window from 22:00.
    assert start == datetime(2026, 12, 3, 14, 0, tzinfo=UTC)
    late = datetime(2026, 12, 3, 14, 30, tzinfo=UTC)  # 22:30 in Shanghai: inside, after the lead
    start, _, _ = proposed_window(change, WindowRule(), None, late)
    assert start == late + timedelta(hours=1)


def test_a_template_change_yaml_lacks_is_named_by_file_and_key(policy_dir: Path, edit) -> None:
    edit("proactive.yaml", "template: add-disk-space", "template: grow-disk")
    edit("proactive.yaml", 'domain: "{server_name}"', 'domain: "{server_name}", port: "{port}"')
    with pytest.raises(PolicyError) as error:
        load_policies(policy_dir)
    assert error.value.problems == [
        "proactive.yaml: disk_fill.template: 'grow-disk' is not a template of change.yaml; "
        "expected one of add-disk-space, renew-certificate, restart-service, rotate-logs",
        "proactive.yaml: certificate_expiry.parameters.port: not a parameter of the template "
        "'renew-certificate'; it has domain, host",
    ]


def test_a_folder_without_proactive_yaml_has_proactive_notices_off(policy_dir: Path) -> None:
    (policy_dir / "proactive.yaml").unlink()
    assert load_policies(policy_dir).proactive.enabled is False
    assert load_policies().proactive.enabled is True
