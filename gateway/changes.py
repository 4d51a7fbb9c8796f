"""Change requests over HTTP, and the pages behind the emailed approval links.

An approval link's GET only shows a confirmation page: mail security scanners fetch every link
before the person clicks, so a GET never decides and never sends anything. The link alone does not
prove who clicks (mails get forwarded), so with `approval_links.confirm_by_code` the page's button
mails a one-time code to the approver's own address from the people data, and only a second POST
with that code decides, once, atomically; the paused change run is then resumed with the decision.
"""

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from jinja2 import select_autoescape
from jinja2.sandbox import SandboxedEnvironment
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.engine import Engine
from sqlmodel import Session

from itilflow.engine import ChangeEngine
from itilflow.models import (
    ApprovalRequest,
    Change,
    add_change_entry,
    get_change_timeline,
    parse_change_ref,
)
from itilflow.notifications import NotificationError, asend_email, render_message
from itilflow.notifications.change_context import change_context, change_url, email_of
from itilflow.policies import Policies, format_duration
from itilflow.runtime import Runtime
from itilflow.services import changes
from itilflow.settings import Settings

log = logging.getLogger("itilflow.gateway.changes")


class ChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=20_000)
    category: Literal["standard", "normal", "emergency"] = "normal"
    cis: list[str] = Field(default_factory=list, max_length=100)
    plan: dict[str, Any] = Field(
        description="backup, steps (each with its undo), verify, "
        "rollback_verify: see itilflow.executors"
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
<p><small>{% if by_code %}Pressing a button mails a one-time code to {{ by_code }}; your
decision is recorded when you enter it.{% else %}Your decision is recorded when you press a button;
this link works once.{% endif %}</small></p>
</form>
{% endif %}
{% if code_form %}
<form method="post" id="code-form">
<input type="hidden" name="decision" value="{{ code_form.decision }}">
<input type="hidden" name="comment" value="{{ code_form.comment }}">
<p><label>Code<br><input name="code" id="code" required inputmode="numeric"
autocomplete="one-time-code" pattern="[0-9 ]{6,12}" maxlength="12" size="10"></label></p>
<p><button class="{{ code_form.decision }}" type="submit" id="confirm">Confirm:
{{ code_form.decision }}</button></p>
</form>
<form method="post">
<input type="hidden" name="decision" value="{{ code_form.decision }}">
<input type="hidden" name="comment" value="{{ code_form.comment }}">
<p><small>No mail? <button type="submit" id="resend">Send a new code</button></small></p>
</form>
{% endif %}
</body></html>"""
)


def page(title: str, *, status_code: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(_PAGE.render(title=title, **values), status_code=status_code)


# Seconds per SMTP operation for a code mail: the approver is waiting on the page.
CODE_MAIL_TIMEOUT = 5.0


def add_routes(
    app: FastAPI,
    *,
    engine: Engine,
    settings: Settings,
    policies: Policies,
    authorize: Callable[..., str],
    change_engine: ChangeEngine,
) -> None:
    assert settings.secret_key is not None
    secret = settings.secret_key.get_secret_value()
    link_policy = policies.change.approval_links
    # The runtime's mail settings, with a short timeout.
    mail_settings = Runtime(settings).mail.model_copy(
        update={"timeout": min(settings.smtp_timeout, CODE_MAIL_TIMEOUT)}
    )
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

    def masked_address_of(session: Session, approver: str) -> str | None:
        address = email_of(session, approver)
        return changes.mask_address(address) if address else None

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
            by_code = None
            if link_policy.confirm_by_code:
                by_code = masked_address_of(session, request.approver) or "your address"
            return page(
                f"{verb} {change.number}?",
                change=change,
                request=request,
                form=True,
                by_code=by_code,
            )

    @app.post("/approvals/{token}", response_class=HTMLResponse, tags=["approvals"])
    async def decide_approval(token: str, http_request: Request) -> HTMLResponse:
        form = parse_qs((await http_request.body()).decode("utf-8", "replace"))
        decision = (form.get("decision") or [""])[0]
        comment = (form.get("comment") or [""])[0].strip()[:2000]
        code = (form.get("code") or [""])[0].strip()[:64]
        with Session(engine, expire_on_commit=False) as session:
            try:
                request, change = changes.read_token(session, token, secret=secret)
            except changes.DecisionRefused as exc:
                return page("This link cannot be used", message=f"{exc}.", status_code=400)
            reason = changes.why_not_open(request, change)
        if reason:  # said first: a used link says so, not that its code is spent
            return page("Your decision was not recorded", message=reason + ".", status_code=409)
        if decision not in ("approve", "reject"):  # a blank form (a scanner) gets no code
            return page(
                "Your decision was not recorded",
                message=f"unknown decision {decision!r}: expected approve or reject.",
                status_code=409,
            )
        if link_policy.confirm_by_code and not code:
            return await send_code(request, change, decision, comment)
        with Session(engine, expire_on_commit=False) as session:
            try:
                changes.decide_by_link(
                    session=session,
                    request=request,
                    decision=decision,
                    comment=comment,
                    code=code,
                    secret=secret,
                    policy=link_policy,
                )
                session.commit()
            except changes.WrongCode as exc:
                session.commit()  # the wrong attempt counts
                void = exc.attempts_left <= 0
                return page(
                    "Your decision was not recorded",
                    change=change,
                    request=request,
                    message=f"{exc}.",
                    form=void,
                    by_code=void and masked_address_of(session, request.approver),
                    code_form=None if void else {"decision": decision, "comment": comment},
                    status_code=409,
                )
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

    async def send_code(
        request: ApprovalRequest, change: Change, decision: str, comment: str
    ) -> HTMLResponse:
        """Mail a one-time code to the approver the link was made for; decide nothing."""
        refused = "Your decision was not recorded"
        code_form = {"decision": decision, "comment": comment}
        with Session(engine, expire_on_commit=False) as session:
            # Always the address on record for the link's approver, never one from the request.
            address = email_of(session, request.approver)
            if not address:
                return page(
                    "The code could not be sent",
                    change=change,
                    request=request,
                    message=f"there is no email address on record for {request.approver}: "
                    "decide in the Prefect UI.",
                    status_code=409,
                )
            try:
                issued, plain_code = changes.issue_approval_code(
                    session=session,
                    request=request,
                    decision=decision,
                    secret=secret,
                    policy=link_policy,
                )
            except changes.CodeNotSent:
                wait = format_duration(link_policy.code_resend_after)
                return page(
                    "A code was sent already",
                    change=change,
                    request=request,
                    message=f"A code was mailed to {changes.mask_address(address)} less than "
                    f"{wait} ago: enter it below, or ask for a new one after {wait}.",
                    code_form=code_form,
                    status_code=429,
                )
            except changes.DecisionRefused as exc:
                return page(refused, message=f"{exc}.", status_code=409)
            session.commit()  # stored before it is mailed: the approver may be quick
            message = render_message(
                "approval_code",
                policies.change.language,
                {
                    "change": change_context(
                        change, policies=policies, public_url=settings.public_url or ""
                    ),
                    "approver": request.approver,
                    "decision": decision,
                    "code": plain_code,
                    "valid_minutes": int(link_policy.code_valid_for.total_seconds() // 60),
                },
            )
        masked = changes.mask_address(address)
        try:
            await asend_email(message, to=[address], settings=mail_settings)
        except (NotificationError, ValueError) as exc:
            log.warning("approval code mail for request %s failed: %s", request.id, exc)
            with Session(engine) as session:
                assert issued.id is not None
                changes.withdraw_approval_code(session=session, code_id=issued.id)
                session.commit()
            return page(
                "The code could not be sent",
                change=change,
                request=request,
                message=f"The mail with your code to {masked} could not be sent, so nothing was "
                "decided. Please press the button again in a moment.",
                form=True,
                by_code=masked,
                status_code=503,
            )
        with Session(engine) as session:
            add_change_entry(
                session=session,
                change_id=request.change_id,
                kind="approval_code_sent",
                actor="gateway",
                message=f"{request.stage}: a code to {decision} was mailed to {request.approver}",
                data={"request": request.id, "decision": decision},
            )
            session.commit()
        return page(
            f"Enter the code sent to {masked}",
            change=change,
            request=request,
            message=f"A code to {decision} {change.number} was mailed to {masked}. Enter it "
            f"below within {format_duration(link_policy.code_valid_for)}; nothing is decided "
            "until then.",
            code_form=code_form,
        )


def _plan_errors(exc: ValidationError) -> str:
    return "; ".join(
        f"plan.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )
