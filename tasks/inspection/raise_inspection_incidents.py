"""Failing checks open incidents, recovered ones resolve them, through the incident process.

One incident per target and check while it fails: the open one is found by its fingerprint
`inspection:<target>:<check>`, so the next run updates it instead of opening another. Once it is
resolved (by recovery or by hand), a new failure is a new occurrence and a new incident: its
dedup key is the fingerprint with the occurrence number (`...#2`), so two runs racing to open the
same occurrence store one incident. Opening stores the trigger that makes the runner start the
incident flow, as the gateway does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from prefect import task
from sqlalchemy import func
from sqlmodel import Session, col, select

from itilflow.models import (
    OPEN_STATUSES,
    CheckResult,
    Incident,
    InspectionRun,
    list_run_results,
    session_scope,
)
from itilflow.policies import Policies
from itilflow.policies.inspection import (
    NODE_METRICS,
    Check,
    IncidentMapping,
    TargetGroup,
    check_name,
)
from itilflow.runtime import runtime
from itilflow.services import incident_actions, incidents

ACTOR = "flow:patrol-inspection"

ActionName = Literal["opened", "updated", "kept", "resolved", "noted"]


@dataclass(frozen=True)
class InspectionAction:
    """What a check's result did to its incident (`incident`: its number)."""

    target: str
    check: str
    incident: str
    action: ActionName


@task(name="raise-inspection-incidents", retries=2, retry_delay_seconds=1)
def raise_inspection_incidents(run_id: int) -> list[InspectionAction]:
    """What happened to each check's incident: opened, updated, kept, resolved or noted."""
    rt = runtime()
    policy = rt.policies.inspection
    actions: list[InspectionAction] = []
    with session_scope(rt.engine) as session:
        run = session.get(InspectionRun, run_id)
        if run is None:
            raise LookupError(f"inspection run {run_id} not found")
        checks = _checks_by_name(policy.group(run.group))
        for result in list_run_results(session=session, run_id=run_id):
            found = checks.get((result.target, result.check_name))
            if found is None:
                continue  # the check left the policy since the run
            ci, check = found
            action = _apply(session, rt.policies, run, result, ci, check)
            if action:
                actions.append(action)
    return actions


def fingerprint_of(target: str, check: str) -> str:
    return f"inspection:{target}:{check}"


def find_open_incident(session: Session, fingerprint: str) -> Incident | None:
    return session.exec(
        select(Incident)
        .where(Incident.fingerprint == fingerprint, col(Incident.status).in_(OPEN_STATUSES))
        .order_by(col(Incident.id).desc())
    ).first()


def _checks_by_name(group: TargetGroup) -> dict[tuple[str, str], tuple[str, Check]]:
    found: dict[tuple[str, str], tuple[str, Check]] = {}
    for target_name, target in group.targets.items():
        for check in target.checks:
            name = check_name(check)
            names = [name]
            if check.type == "node_exporter":
                names += [f"{name}.{metric}" for metric in NODE_METRICS]
            for each in names:
                found[(target_name, each)] = (target.ci or target_name, check)
    return found


def _apply(
    session: Session,
    policies: Policies,
    run: InspectionRun,
    result: CheckResult,
    ci: str,
    check: Check,
) -> InspectionAction | None:
    mapping = policies.inspection.incident_for(check)
    fingerprint = fingerprint_of(result.target, result.check_name)
    incident = find_open_incident(session, fingerprint)
    state = {
        "group": run.group,
        "target": result.target,
        "check": result.check_name,
        "status": result.status,
        "value": result.value,
        "run_id": run.id,
    }
    action: ActionName | None = None
    if result.status in mapping.open_on:
        if incident is None:
            incident = _open(session, policies, run, result, ci, mapping, fingerprint, state)
            action = "opened"
        else:
            action = _still_failing(session, policies, run, result, incident, state)
    elif incident is not None and result.status == "ok":
        action = _recovered(session, policies, run, result, incident, state, mapping)
    elif incident is not None:
        action = _better(session, policies, run, result, incident, state)
    if incident is None or action is None:
        return None
    result.incident_id = incident.id
    session.add(result)
    session.flush()
    return InspectionAction(
        target=result.target,
        check=result.check_name,
        incident=incident.number,
        action=action,
    )


def _open(
    session: Session,
    policies: Policies,
    run: InspectionRun,
    result: CheckResult,
    ci: str,
    mapping: IncidentMapping,
    fingerprint: str,
    state: dict[str, Any],
) -> Incident:
    """A new occurrence: its own incident, deduplicated by the occurrence number."""
    occurrence = (
        1
        + session.exec(
            select(func.count()).select_from(Incident).where(Incident.fingerprint == fingerprint)
        ).one()
    )
    incident, _ = incidents.open_incident(
        session=session,
        new=incidents.NewIncident(
            title=f"{result.target}: {result.check_name} {result.status}: {result.message}"[:300],
            description=_describe(run, result),
            category=mapping.category,
            ci_name=ci,
            impact=mapping.impact,
            urgency=mapping.urgency,
            source="inspection",
            fingerprint=fingerprint,
            labels={"inspection": state},
        ),
        policies=policies,
        actor=ACTOR,
        dedup_key=f"{fingerprint}#{occurrence}",
    )
    return incident


def _still_failing(
    session: Session,
    policies: Policies,
    run: InspectionRun,
    result: CheckResult,
    incident: Incident,
    state: dict[str, Any],
) -> ActionName:
    """Still failing: a comment when the status changed (or it had recovered), else kept."""
    before = (incident.labels or {}).get("inspection", {})
    action: ActionName = "kept"
    if before.get("status") != result.status or before.get("recovered"):
        incident_actions.comment(
            session,
            incident,
            actor=ACTOR,
            note=f"inspection run {run.id}: {result.check_name} is {result.status}: "
            f"{result.message}",
            policies=policies,
        )
        action = "updated"
    incident.labels = {**(incident.labels or {}), "inspection": state}
    session.add(incident)
    return action


def _recovered(
    session: Session,
    policies: Policies,
    run: InspectionRun,
    result: CheckResult,
    incident: Incident,
    state: dict[str, Any],
    mapping: IncidentMapping,
) -> ActionName | None:
    """Back to ok: resolve the incident, or (as the policy says) note the recovery once."""
    note = f"inspection run {run.id}: {result.check_name} recovered: {result.message}"
    if mapping.resolve_on_recovery:
        incident_actions.resolve(session, incident, actor=ACTOR, note=note, policies=policies)
        return "resolved"
    if (incident.labels or {}).get("inspection", {}).get("recovered"):
        return None
    incident_actions.comment(session, incident, actor=ACTOR, note=note, policies=policies)
    incident.labels = {**(incident.labels or {}), "inspection": {**state, "recovered": True}}
    session.add(incident)
    return "noted"


def _better(
    session: Session,
    policies: Policies,
    run: InspectionRun,
    result: CheckResult,
    incident: Incident,
    state: dict[str, Any],
) -> ActionName | None:
    """Better but not ok (critical -> warning): the incident stays open; say so once."""
    before = (incident.labels or {}).get("inspection", {})
    if before.get("status") == result.status:
        return None
    incident_actions.comment(
        session,
        incident,
        actor=ACTOR,
        note=f"inspection run {run.id}: {result.check_name} is {result.status}: {result.message}",
        policies=policies,
    )
    incident.labels = {**(incident.labels or {}), "inspection": state}
    session.add(incident)
    return "updated"


def _describe(run: InspectionRun, result: CheckResult) -> str:
    value = "" if result.value is None else f"\nValue: {result.value:g}{result.unit}"
    return (
        f"Patrol inspection of group {run.group} (run {run.id}) found {result.target} / "
        f"{result.check_name} {result.status} at {result.at:%Y-%m-%d %H:%M:%S} UTC.\n"
        f"{result.message}{value}\n"
        f"Trend: GET /api/inspections/targets/{result.target}/history"
        f"?check={result.check_name}"
    )
