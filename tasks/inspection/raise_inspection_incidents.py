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
    IncidentCreate,
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
    if incident is None:
        if result.status not in mapping.open_on:
            return None
        incident = _open(session, policies, run, result, ci, mapping, fingerprint, state)
        action = "opened"
    else:
        seen = _Seen(session, policies, run, result, incident, state)
        if result.status in mapping.open_on:
            action = _status_changed(seen, failing=True)
        elif result.status == "ok":
            action = _recovered(seen, resolve=mapping.resolve_on_recovery)
        else:
            action = _status_changed(seen, failing=False)
    if action is None:
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
        new=IncidentCreate(
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


@dataclass
class _Seen:
    """A check's result next to its open incident, and the state to keep on the incident."""

    session: Session
    policies: Policies
    run: InspectionRun
    result: CheckResult
    incident: Incident
    state: dict[str, Any]

    @property
    def before(self) -> dict[str, Any]:
        return (self.incident.labels or {}).get("inspection", {})

    def comment(self, note: str) -> None:
        incident_actions.comment(
            self.session, self.incident, actor=ACTOR, note=note, policies=self.policies
        )

    def keep_state(self, **more: Any) -> None:
        labels = self.incident.labels or {}
        self.incident.labels = {**labels, "inspection": {**self.state, **more}}
        self.session.add(self.incident)


def _status_changed(seen: _Seen, *, failing: bool) -> ActionName | None:
    """Still failing, or better but not ok (critical -> warning): the incident stays open. A
    comment when the status changed (or, failing again, after a noted recovery), said once; a
    failing check's state is kept on the incident every run."""
    result = seen.result
    changed = seen.before.get("status") != result.status or (
        failing and bool(seen.before.get("recovered"))
    )
    if changed:
        seen.comment(
            f"inspection run {seen.run.id}: {result.check_name} is {result.status}: "
            f"{result.message}"
        )
    if changed or failing:
        seen.keep_state()
    if changed:
        return "updated"
    return "kept" if failing else None


def _recovered(seen: _Seen, *, resolve: bool) -> ActionName | None:
    """Back to ok: resolve the incident, or (as the policy says) note the recovery once."""
    result = seen.result
    note = f"inspection run {seen.run.id}: {result.check_name} recovered: {result.message}"
    if resolve:
        incident_actions.resolve(
            seen.session, seen.incident, actor=ACTOR, note=note, policies=seen.policies
        )
        return "resolved"
    if seen.before.get("recovered"):
        return None
    seen.comment(note)
    seen.keep_state(recovered=True)
    return "noted"


def _describe(run: InspectionRun, result: CheckResult) -> str:
    value = "" if result.value is None else f"\nValue: {result.value:g}{result.unit}"
    return (
        f"Patrol inspection of group {run.group} (run {run.id}) found {result.target} / "
        f"{result.check_name} {result.status} at {result.at:%Y-%m-%d %H:%M:%S} UTC.\n"
        f"{result.message}{value}\n"
        f"Trend: GET /api/inspections/targets/{result.target}/history"
        f"?check={result.check_name}"
    )
