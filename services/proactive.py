"""Proactive notices from inspection results: a prediction inside proactive.yaml's horizon opens
a notice (one per CI and kind at a time), a later result updates it, a recovery closes it as not
needed, a lapsed window or a passed prediction ends it. Deciding on one is proactive_decisions.py.

Works in the caller's transaction; the caller mails what `observe` returns as `proposed`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlmodel import Session

from itilflow.models import (
    CheckResult,
    ConfigurationItem,
    ProactiveNotice,
    ProactiveStatus,
    add_proactive_entry,
    find_open_notice,
)
from itilflow.policies import NoAllowedStart, Policies
from itilflow.policies.inspection import Check, TlsCheck
from itilflow.policies.proactive import (
    Prediction,
    expiry_prediction,
    fill_parameters,
    fill_prediction,
    inside_horizon,
    proposed_window,
)

log = logging.getLogger("itilflow.services.proactive")

ACTOR = "flow:patrol-inspection"
EventName = Literal["proposed", "updated", "not_needed", "superseded", "expired", "cleared"]
# A moved prediction is written on the timeline only when it moved this much: a fill rate
# wobbles a little every run.
NOTEWORTHY_MOVE = timedelta(hours=6)


@dataclass(frozen=True)
class Observation:
    """What one inspection result says about a proactive kind on a CI. `prediction` None with
    `answered` True: the check answered and foresees nothing (a recovery)."""

    ci: str
    kind: str
    target: str
    check: str
    prediction: Prediction | None
    answered: bool


@dataclass(frozen=True)
class ProactiveEvent:
    proactive_id: int
    event: EventName


def observation_of(result: CheckResult, ci: str, check: Check) -> Observation | None:
    """The result's observation, or None for a result no proactive kind reads."""
    answered = result.status != "error"
    if isinstance(check, TlsCheck) and result.check_type == "tls":
        prediction = expiry_prediction(
            result.value if answered else None,
            result.at,
            check.host,
            check.port,
            check.server_name or check.host,
        )
        kind = "certificate_expiry"
    elif result.check_name.endswith(".filesystem_fill"):
        prediction = fill_prediction(result.details or {}, result.value, result.at)
        kind = "disk_fill"
    else:
        return None
    return Observation(ci, kind, result.target, result.check_name, prediction, answered)


def observe(
    session: Session, policies: Policies, seen: Observation, *, now: datetime, run_id: int | None
) -> list[ProactiveEvent]:
    """Open, update or end the CI's notice of this kind as the observation says."""
    rule = policies.proactive.rule(seen.kind)
    if not (policies.proactive.enabled and rule.enabled):
        return []
    notice = find_open_notice(session=session, ci_name=seen.ci, kind=seen.kind)
    prediction = seen.prediction
    inside = prediction is not None and inside_horizon(prediction, rule.horizon, now)
    if notice is not None and (notice.target, notice.check_name) != (seen.target, seen.check):
        if not inside or prediction is None or prediction.at >= notice.predicted_at:
            return []  # another check of the same CI keeps the notice: the soonest one counts
    if notice is None:
        if not inside or prediction is None:
            return []
        created = _open(session, policies, seen, prediction, now=now, run_id=run_id)
        return [ProactiveEvent(created.id, "proposed")] if created and created.id else []
    assert notice.id is not None
    if prediction is not None and prediction.at <= now:
        return _end(session, notice, ProactiveStatus.expired, "the predicted moment has come", now)
    if not inside:
        if not seen.answered:
            return []  # no answer says nothing about the prediction
        why = "the check no longer foresees it within the horizon"
        return _end(session, notice, ProactiveStatus.not_needed, why, now)
    assert prediction is not None
    if notice.status == ProactiveStatus.proposed and notice.proposed_start <= now:
        ended = _end(session, notice, ProactiveStatus.superseded, "the window passed", now)
        created = _open(session, policies, seen, prediction, now=now, run_id=run_id)
        if created is None or created.id is None:
            return ended
        return [*ended, ProactiveEvent(created.id, "proposed")]
    return _update(session, notice, seen, prediction, now)


def _open(
    session: Session,
    policies: Policies,
    seen: Observation,
    prediction: Prediction,
    *,
    now: datetime,
    run_id: int | None,
) -> ProactiveNotice | None:
    rule = policies.proactive.rule(seen.kind)
    ci = session.get(ConfigurationItem, seen.ci)
    attributes: dict[str, Any] = (ci.attributes or {}) if ci else {}
    parameters, missing = fill_parameters(rule, {"ci": seen.ci, **prediction.values}, attributes)
    try:
        start, end, zone = proposed_window(
            policies.change, policies.proactive.window, ci.time_zone if ci else None, now
        )
    except NoAllowedStart as exc:
        log.warning("no proactive notice for %s %s: %s", seen.ci, seen.kind, exc)
        return None
    contact, language = customer_of(policies, ci)
    notice = ProactiveNotice(
        ci_name=seen.ci,
        kind=seen.kind,
        item=prediction.item,
        target=seen.target,
        check_name=seen.check,
        predicted_at=prediction.at,
        proposed_start=start,
        proposed_end=end,
        time_zone=zone,
        template=rule.template,
        parameters=parameters,
        owner_group=ci.owner_group if ci else None,
        customer_contact=contact,
        customer_language=language,
        run_id=run_id,
        created_at=now,
        updated_at=now,
    )
    session.add(notice)
    session.flush()
    assert notice.id is not None
    add_proactive_entry(
        session=session,
        proactive_id=notice.id,
        kind="proposed",
        actor=ACTOR,
        message=(
            f"{seen.target} / {seen.check} foresees {seen.kind} of {prediction.item} at "
            f"{prediction.at:%Y-%m-%d %H:%M} UTC; proposed {rule.template} from "
            f"{start:%Y-%m-%d %H:%M} UTC"
            + (f"; still to give: {', '.join(missing)}" if missing else "")
        ),
        data={"run_id": run_id, "missing": missing, "parameters": parameters},
    )
    return notice


def customer_of(policies: Policies, ci: ConfigurationItem | None) -> tuple[str | None, str]:
    """The CI's customer contact (None: there is none, or the policy mails none) and language."""
    rule = policies.proactive.customer
    default = rule.default_language
    if ci is None:
        return None, default
    email = _field(ci, rule.email_field)
    language = _field(ci, rule.language_field)
    if language not in ("en", "zh_CN"):
        language = default
    return (str(email) if email and rule.mail else None), str(language)


def _field(ci: ConfigurationItem, name: str) -> Any:
    if name.startswith("attributes."):
        return (ci.attributes or {}).get(name.removeprefix("attributes."))
    return getattr(ci, name, None)


def _update(
    session: Session,
    notice: ProactiveNotice,
    seen: Observation,
    prediction: Prediction,
    now: datetime,
) -> list[ProactiveEvent]:
    assert notice.id is not None
    moved = abs(prediction.at - notice.predicted_at) >= NOTEWORTHY_MOVE
    notice.predicted_at = prediction.at
    notice.item = prediction.item
    notice.target, notice.check_name = seen.target, seen.check
    notice.updated_at = now
    session.add(notice)
    if not moved:
        return []
    add_proactive_entry(
        session=session,
        proactive_id=notice.id,
        kind="updated",
        actor=ACTOR,
        message=f"now foreseen at {prediction.at:%Y-%m-%d %H:%M} UTC",
        data={"predicted_at": prediction.at.isoformat()},
    )
    return [ProactiveEvent(notice.id, "updated")]


def _end(
    session: Session, notice: ProactiveNotice, status: ProactiveStatus, why: str, now: datetime
) -> list[ProactiveEvent]:
    """End the occurrence: an undecided notice takes `status`; a decided one keeps its
    decision and is only cleared."""
    assert notice.id is not None
    undecided = notice.status == ProactiveStatus.proposed
    if undecided:
        notice.status = status.value
    notice.cleared_at = notice.updated_at = now
    session.add(notice)
    event: EventName = status.value if undecided else "cleared"  # type: ignore[assignment]
    add_proactive_entry(
        session=session,
        proactive_id=notice.id,
        kind=event,
        actor=ACTOR,
        message=f"{event.replace('_', ' ')}: {why}",
    )
    session.flush()
    return [ProactiveEvent(notice.id, event)]
