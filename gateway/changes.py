"""Change requests over HTTP: submit, read, edit, cancel. The rules are services/changes'; a
change's run is started (and an edited one's old run cancelled) through the change engine.
The pages behind the emailed approval links are gateway/approvals.py.

The routes are plain `def`s: FastAPI runs them in its thread pool, so a database call that waits
on a lock never holds the event loop (docs/scaling.md, "The gateway under load"). The change
engine's calls are coroutines of the loop's Prefect client: `_on_loop` hands them back to it.
"""

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import anyio.from_thread
from fastapi import APIRouter, HTTPException, status
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from sqlmodel import Session

from itilflow.engine import ChangeEngine
from itilflow.gateway.deps import ChangeEngineDep, Gateway, GatewayDep, Reporter
from itilflow.gateway.schemas import refuse_identity_claims
from itilflow.models import (
    Change,
    Engineer,
    add_change_entry,
    get_change_timeline,
    parse_change_ref,
)
from itilflow.notifications.change_context import change_url
from itilflow.services import changes
from itilflow.services.principals import Principal

log = logging.getLogger("itilflow.gateway.changes")

router = APIRouter(prefix="/api/changes", tags=["changes"])


class ChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=20_000)
    category: Literal["standard", "normal", "emergency"] = "normal"
    cis: list[str] = Field(default_factory=list, max_length=100)
    plan: dict[str, Any] | None = Field(
        default=None,
        description="backup, steps (each with its undo), verify, "
        "rollback_verify: see itilflow.executors. Left out for a standard change.",
    )
    template: str | None = Field(
        default=None,
        max_length=200,
        description="a standard change's template (GET /api/change-templates); its plan is "
        "built from the template and `parameters`",
    )
    parameters: dict[str, Any] = Field(default_factory=dict, max_length=50)
    planned_start: AwareDatetime | None = None
    planned_end: AwareDatetime | None = None
    requester_email: str | None = Field(
        default=None,
        max_length=320,
        description="who hears about the outcome, for an integration's request; a person's "
        "comes from the directory",
    )

    @model_validator(mode="before")
    @classmethod
    def _requester_is_the_principal(cls, data: Any) -> Any:
        return refuse_identity_claims(data, "requester")

    @model_validator(mode="after")
    def _a_template_is_a_standard_change(self) -> "ChangeIn":
        if self.template is not None and "category" not in self.model_fields_set:
            self.category = "standard"
        return self


class ChangeEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=20_000)
    category: Literal["standard", "normal", "emergency"] | None = None
    cis: list[str] | None = None
    plan: dict[str, Any] | None = None
    planned_start: AwareDatetime | None = None
    planned_end: AwareDatetime | None = None

    @model_validator(mode="after")
    def _no_null_for_what_a_change_always_has(self) -> "ChangeEdit":
        # None here means "left out"; an explicit null would store a change without a title,
        # category or CI list (a 500 then on every later read). Only the window can be cleared.
        nulls = sorted(
            name
            for name in self.model_fields_set - {"planned_start", "planned_end"}
            if getattr(self, name) is None
        )
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null: leave a field out to keep it")
        return self


class ChangeOut(BaseModel):
    id: int
    number: str
    url: str
    title: str
    category: str
    status: str
    version: int
    cis: list[str]
    risk_score: float | None
    risk_level: str | None
    risk_reasons: list[str]
    planned_start: datetime | None
    planned_end: datetime | None
    flow_run_id: str | None
    incident_id: int | None
    review: dict[str, Any] | None


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=2000)


class OverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


def out(gateway: Gateway, change: Change) -> ChangeOut:
    assert change.id is not None
    return ChangeOut(
        id=change.id,
        number=change.number,
        url=change_url(gateway.settings.public_url or "", change.id),
        title=change.title,
        category=change.category,
        status=change.status.value,
        version=change.version,
        cis=change.ci_names,
        risk_score=change.risk_score,
        risk_level=change.risk_level,
        risk_reasons=change.risk_reasons,
        planned_start=change.planned_start,
        planned_end=change.planned_end,
        flow_run_id=change.flow_run_id,
        incident_id=change.incident_id,
        review=change.review,
    )


def load(session: Session, ref: str) -> Change:
    try:
        return changes.load_change(session, parse_change_ref(ref))
    except (ValueError, LookupError) as exc:
        raise HTTPException(404, f"{ref} not found") from exc


def requester_email(session: Session, principal: Principal, given: str | None) -> str | None:
    """A person's mail goes to their address in the directory, never to one the body names; an
    integration may name where the outcome goes."""
    if principal.kind != "person":
        return given
    if given is not None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "requester_email: not accepted from a person: the outcome goes to your address in "
            "the directory",
        )
    engineer = session.get(Engineer, principal.name)
    return engineer.email if engineer else None


def check_may_alter(change: Change, principal: Principal, what: str) -> None:
    """Only the change's requester or a change manager edits or cancels it (403)."""
    if change.requester == principal.name or principal.has("change_manager"):
        return
    log.warning(
        "refused to let %s %r %s %s (requested by %r)",
        principal.kind,
        principal.name,
        what,
        change.number,
        change.requester,
    )
    raise HTTPException(
        status.HTTP_403_FORBIDDEN,
        f"only {change.number}'s requester or a change_manager may {what} it",
    )


def _on_loop(call: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run the coroutine function `call` on the event loop from a route's worker thread."""
    return anyio.from_thread.run(call, *args)


def start(change_engine: ChangeEngine, change_id: int) -> None:
    try:
        _on_loop(change_engine.start, change_id)
    except Exception as exc:  # noqa: BLE001 (stored already; started again by housekeeping)
        log.warning("could not start the run of change %s yet: %s", change_id, exc)


@router.post("", response_model=ChangeOut, status_code=201)
def create_change(
    body: ChangeIn, client: Reporter, gateway: GatewayDep, change_engine: ChangeEngineDep
) -> ChangeOut:
    with Session(gateway.engine, expire_on_commit=False) as session:
        new = changes.NewChange(
            title=body.title,
            description=body.description,
            category=body.category,
            ci_names=body.cis,
            plan=body.plan,
            planned_start=body.planned_start,
            planned_end=body.planned_end,
            requester=client.name,
            requester_email=requester_email(session, client, body.requester_email),
            template=body.template,
            parameters=body.parameters,
            requester_roles=client.roles,
            requester_groups=client.groups,
        )
        try:
            change = changes.submit_change(
                session=session, new=new, actor=client.name, policies=gateway.policies
            )
        except ValidationError as exc:
            raise HTTPException(422, _plan_errors(exc)) from exc
        except changes.NotAllowedToRequest as exc:
            raise HTTPException(403, str(exc)) from exc
        except (changes.StandardChangeRefused, changes.ChangeError) as exc:
            raise HTTPException(422, str(exc)) from exc
        session.commit()
    assert change.id is not None
    start(change_engine, change.id)
    return out(gateway, change)


@router.get("/{ref}", response_model=ChangeOut)
def get_change(ref: str, _: Reporter, gateway: GatewayDep) -> ChangeOut:
    with Session(gateway.engine) as session:
        return out(gateway, load(session, ref))


@router.get("/{ref}/timeline")
def get_change_entries(ref: str, _: Reporter, gateway: GatewayDep) -> list[dict[str, Any]]:
    with Session(gateway.engine) as session:
        change = load(session, ref)
        assert change.id is not None
        return [
            {"at": e.at, "actor": e.actor, "kind": e.kind, "message": e.message, "data": e.data}
            for e in get_change_timeline(session=session, change_id=change.id)
        ]


@router.patch("/{ref}", response_model=ChangeOut)
def edit(
    ref: str,
    body: ChangeEdit,
    client: Reporter,
    gateway: GatewayDep,
    change_engine: ChangeEngineDep,
) -> ChangeOut:
    fields = body.model_dump(exclude_unset=True)
    if "cis" in fields:
        fields["ci_names"] = fields.pop("cis")
    if not fields:
        raise HTTPException(422, "nothing to change")
    with Session(gateway.engine, expire_on_commit=False) as session:
        change = load(session, ref)
        check_may_alter(change, client, "edit")
        try:
            old_run = changes.edit_change(
                session=session, change=change, changes=fields, actor=client.name
            )
        except ValidationError as exc:
            raise HTTPException(422, _plan_errors(exc)) from exc
        except changes.StandardChangeRefused as exc:
            raise HTTPException(422, str(exc)) from exc
        except changes.ChangeError as exc:
            raise HTTPException(409, str(exc)) from exc
        session.commit()
    if old_run:
        _on_loop(change_engine.cancel, old_run)
    assert change.id is not None
    start(change_engine, change.id)
    return out(gateway, change)


@router.post("/{ref}/cancel", response_model=ChangeOut)
def cancel(
    ref: str, body: CancelIn, client: Reporter, gateway: GatewayDep, change_engine: ChangeEngineDep
) -> ChangeOut:
    with Session(gateway.engine, expire_on_commit=False) as session:
        change = load(session, ref)
        check_may_alter(change, client, "cancel")
        try:
            run = changes.cancel_change(
                session=session, change=change, actor=client.name, note=body.note
            )
        except changes.ChangeError as exc:
            raise HTTPException(409, str(exc)) from exc
        session.commit()
    if run:
        _on_loop(change_engine.cancel, run)
    return out(gateway, change)


@router.post("/{ref}/segregation-override", response_model=ChangeOut)
def override_segregation(
    ref: str,
    body: OverrideIn,
    by: Reporter,
    gateway: GatewayDep,
    change_engine: ChangeEngineDep,
) -> ChangeOut:
    """A change manager lets the people segregation of duties keeps out of a blocked stage
    decide there, with a reason on the record; the change's run starts again to ask them."""
    with Session(gateway.engine, expire_on_commit=False) as session:
        change = load(session, ref)
        try:
            changes.override_segregation(session, change, by, body.reason, gateway.policies)
        except changes.OverrideForbidden as exc:
            assert change.id is not None
            add_change_entry(
                session=session,
                change_id=change.id,
                kind="segregation_override_refused",
                actor=by.name,
                message=f"segregation override refused: {exc}",
            )
            session.commit()
            raise HTTPException(403, str(exc)) from exc
        except changes.OverrideRefused as exc:
            raise HTTPException(409, str(exc)) from exc
        old_run, change.flow_run_id = change.flow_run_id, None
        session.add(change)
        session.commit()
    if old_run:  # paused waiting for decisions: a new run asks the people let through
        _on_loop(change_engine.cancel, old_run)
    assert change.id is not None
    start(change_engine, change.id)
    return out(gateway, change)


def _plan_errors(exc: ValidationError) -> str:
    return "; ".join(
        f"plan.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )
