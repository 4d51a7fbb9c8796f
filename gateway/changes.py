"""Change requests over HTTP, and the pages behind the emailed approval links.

An approval link's GET only shows a confirmation page: mail security scanners fetch every link
before the person clicks, so a GET never decides. The page's POST decides, once, atomically; the
paused change run is then resumed with the decision.
"""

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from jinja2 import select_autoescape
from jinja2.sandbox import SandboxedEnvironment
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.engine import Engine
from sqlmodel import Session

from itilflow import changes
from itilflow.change_messages import change_url
from itilflow.models import Change, get_change_timeline, parse_change_ref
from itilflow.settings import Settings

log = logging.getLogger("itilflow.gateway.changes")


class ChangeEngine(Protocol):
    """How the gateway starts, cancels and resumes change runs on the engine."""

    async def start(self, change_id: int) -> str | None: ...
    async def cancel(self, flow_run_id: str) -> None: ...
    async def resume(self, flow_run_id: str, run_input: dict[str, Any]) -> bool: ...


class PrefectChangeEngine:
    """Deployment runs on the worker; resume and cancel through the Prefect API."""

    deployment = "change/manage-change"

    async def start(self, change_id: int) -> str | None:
        from prefect.deployments import run_deployment

        run = await run_deployment(self.deployment, parameters={"change_id": change_id}, timeout=0)
        return str(run.id)

    async def cancel(self, flow_run_id: str) -> None:
        from uuid import UUID

        from prefect import get_client
        from prefect.states import Cancelling

        async with get_client() as client:
            await client.set_flow_run_state(UUID(flow_run_id), Cancelling(), force=True)

    async def resume(self, flow_run_id: str, run_input: dict[str, Any]) -> bool:
        """Resume the paused run; it may be between two pauses for a moment, so try again
        briefly. The decision is stored already: a run that is not paused reads it itself."""
        from uuid import UUID

        from prefect.exceptions import FlowPauseTimeout
        from prefect.flow_runs import NotPausedError, aresume_flow_run

        for _ in range(20):
            try:
                await aresume_flow_run(UUID(flow_run_id), run_input=run_input)
                return True
            except NotPausedError:
                await asyncio.sleep(0.5)
            except (FlowPauseTimeout, RuntimeError) as exc:
                log.warning("could not resume %s: %s", flow_run_id, exc)
                return False
        return False


class ChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=20_000)
    category: Literal["standard", "normal", "emergency"] = "normal"
    cis: list[str] = Field(default_factory=list, max_length=100)
    plan: dict[str, Any] = Field(
        description="backup, steps (each with its undo), verify, "
        "rollback_verify: see itilflow.change_steps"
    )
    planned_start: AwareDatetime | None = None
    planned_end: AwareDatetime | None = None
    requester: str | None = Field(default=None, max_length=200)
    requester_email: str | None = Field(default=None, max_length=320)


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


_pages = SandboxedEnvironment(autoescape=select_autoescape(default=True, default_for_string=True))
_PAGE = _pages.from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}
button{padding:.5rem 1rem;margin-right:.5rem} .approve{background:#00875a;color:#fff}
.reject{background:#de350b;color:#fff} dt{color:#6b778c}</style></head>
<body><h1 id="title">{{ title }}</h1>
{% if change %}<dl>
<dt>Change</dt><dd><strong>{{ change.number }}</strong> (version {{ change.version }}):
{{ change.title }}</dd>
<dt>Category and risk</dt><dd>{{ change.category }}, {{ change.risk_level }} risk
({{ change.risk_score }}): {{ change.risk_reasons | join("; ") }}</dd>
<dt>CIs</dt><dd>{{ change.ci_names | join(", ") }}</dd>
{% if request %}<dt>Asked</dt><dd>{{ request.approver }}, as {{ request.stage }}</dd>{% endif %}
</dl>{% endif %}
{% if message %}<p id="message">{{ message }}</p>{% endif %}
{% if form %}
<form method="post">
<p><label>Comment<br><textarea name="comment" rows="3" cols="50" maxlength="2000"></textarea>
</label></p>
<p>
<button class="approve" type="submit" name="decision" value="approve" id="approve">Approve
</button>
<button class="reject" type="submit" name="decision" value="reject" id="reject">Reject</button>
</p>
<p><small>Your decision is recorded when you press a button; this link works once.</small></p>
</form>
{% endif %}
</body></html>"""
)


def page(title: str, *, status_code: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(_PAGE.render(title=title, **values), status_code=status_code)


def add_routes(
    app: FastAPI,
    *,
    engine: Engine,
    settings: Settings,
    authorize: Callable[..., str],
    change_engine: ChangeEngine,
) -> None:
    assert settings.secret_key is not None
    secret = settings.secret_key.get_secret_value()
    router = APIRouter(tags=["changes"])
    Client = Annotated[str, Depends(authorize)]

    def out(change: Change) -> ChangeOut:
        assert change.id is not None
        return ChangeOut(
            id=change.id,
            number=change.number,
            url=change_url(settings.public_url or "", change.id),
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
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{ref} not found") from exc

    async def start(change_id: int) -> None:
        try:
            await change_engine.start(change_id)
        except Exception as exc:  # noqa: BLE001 (stored already; started again by housekeeping)
            log.warning("could not start the run of change %s yet: %s", change_id, exc)

    @router.post("/api/changes", response_model=ChangeOut, status_code=201)
    async def create_change(body: ChangeIn, client: Client) -> ChangeOut:
        new = changes.NewChange(
            title=body.title,
            description=body.description,
            category=body.category,
            ci_names=body.cis,
            plan=body.plan,
            planned_start=body.planned_start,
            planned_end=body.planned_end,
            requester=body.requester or client,
            requester_email=body.requester_email,
        )
        with Session(engine, expire_on_commit=False) as session:
            try:
                change = changes.submit_change(session=session, new=new, actor=client)
            except ValidationError as exc:
                raise HTTPException(422, _plan_errors(exc)) from exc
            except changes.ChangeError as exc:
                raise HTTPException(422, str(exc)) from exc
            session.commit()
        assert change.id is not None
        await start(change.id)
        return out(change)

    @router.get("/api/changes/{ref}", response_model=ChangeOut)
    def get_change(ref: str, _: Client) -> ChangeOut:
        with Session(engine) as session:
            return out(load(session, ref))

    @router.get("/api/changes/{ref}/timeline")
    def get_change_entries(ref: str, _: Client) -> list[dict[str, Any]]:
        with Session(engine) as session:
            change = load(session, ref)
            assert change.id is not None
            return [
                {"at": e.at, "actor": e.actor, "kind": e.kind, "message": e.message, "data": e.data}
                for e in get_change_timeline(session=session, change_id=change.id)
            ]

    @router.patch("/api/changes/{ref}", response_model=ChangeOut)
    async def edit(ref: str, body: ChangeEdit, client: Client) -> ChangeOut:
        fields = body.model_dump(exclude_unset=True)
        if "cis" in fields:
            fields["ci_names"] = fields.pop("cis")
        if not fields:
            raise HTTPException(422, "nothing to change")
        with Session(engine, expire_on_commit=False) as session:
            change = load(session, ref)
            try:
                old_run = changes.edit_change(
                    session=session, change=change, changes=fields, actor=client
                )
            except ValidationError as exc:
                raise HTTPException(422, _plan_errors(exc)) from exc
            except changes.ChangeError as exc:
                raise HTTPException(409, str(exc)) from exc
            session.commit()
        if old_run:
            await change_engine.cancel(old_run)
        assert change.id is not None
        await start(change.id)
        return out(change)

    @router.post("/api/changes/{ref}/cancel", response_model=ChangeOut)
    async def cancel(ref: str, body: CancelIn, client: Client) -> ChangeOut:
        with Session(engine, expire_on_commit=False) as session:
            change = load(session, ref)
            try:
                run = changes.cancel_change(
                    session=session, change=change, actor=client, note=body.note
                )
            except changes.ChangeError as exc:
                raise HTTPException(409, str(exc)) from exc
            session.commit()
        if run:
            await change_engine.cancel(run)
        return out(change)

    app.include_router(router)

    @app.get("/approvals/{token}", response_class=HTMLResponse, tags=["approvals"])
    def confirm_approval(
        token: str, decision: Annotated[str | None, Query()] = None
    ) -> HTMLResponse:
        with Session(engine) as session:
            try:
                request, change = changes.read_token(session, token, secret=secret)
            except changes.DecisionRefused as exc:
                return page("This link cannot be used", message=f"{exc}.", status_code=400)
            reason = changes.why_not_open(request, change)
            if reason:
                return page(
                    "No decision needed",
                    change=change,
                    request=request,
                    message=reason + ".",
                    status_code=409,
                )
            verb = {"approve": "Approve", "reject": "Reject"}.get(decision or "", "Decide on")
            return page(
                f"{verb} {change.number}?",
                change=change,
                request=request,
                form=True,
            )

    @app.post("/approvals/{token}", response_class=HTMLResponse, tags=["approvals"])
    async def decide_approval(token: str, http_request: Request) -> HTMLResponse:
        form = parse_qs((await http_request.body()).decode("utf-8", "replace"))
        decision = (form.get("decision") or [""])[0]
        comment = (form.get("comment") or [""])[0].strip()[:2000]
        with Session(engine, expire_on_commit=False) as session:
            try:
                request, change = changes.read_token(session, token, secret=secret)
            except changes.DecisionRefused as exc:
                return page("This link cannot be used", message=f"{exc}.", status_code=400)
            try:
                changes.decide(
                    session=session, request=request, decision=decision, comment=comment, via="link"
                )
                session.commit()
            except changes.DecisionRefused as exc:
                session.rollback()
                return page("Your decision was not recorded", message=f"{exc}.", status_code=409)
            flow_run_id = change.flow_run_id
        if flow_run_id:
            await change_engine.resume(
                flow_run_id,
                {"approver": request.approver, "decision": decision, "comment": comment},
            )
        return page(
            "Thank you",
            change=change,
            request=request,
            message=f"Your decision '{decision}' on {change.number} is recorded.",
        )


def _plan_errors(exc: ValidationError) -> str:
    return "; ".join(
        f"plan.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )
