"""The change page, /changes/CHG-000042: the whole plan, the risk and its reasons, the approval
stages and who decided when, the timeline and the steps' outputs (redacted as the run stored
them).

Who may see it: a signed-in person with the role agent, approver, change_manager or admin (and
the roles that imply them), the change's requester, and anyone asked to approve it. Anyone else
signed in gets 403; a browser signed in as nobody is sent to the sign-in page. A person with a
live approval request sees the link to decide, which asks for the mailed code as the mail's link
does (gateway/approvals.py).

The route is a plain `def`: FastAPI runs it in its thread pool, so its database reads never
hold the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from itilflow.gateway.console.base import language_of, person_or_signin, render
from itilflow.gateway.console.catalogue import texts
from itilflow.gateway.console.page_parts import message_page, when_in
from itilflow.gateway.console.plan_view import plan_view
from itilflow.gateway.deps import Gateway, gateway_of
from itilflow.models import (
    ApprovalRequest,
    Change,
    ChangeEntry,
    get_change_timeline,
    incident_number,
    list_approval_requests,
    parse_change_ref,
)
from itilflow.services import changes
from itilflow.services.principals import Principal

log = logging.getLogger("itilflow.gateway.console")

router = APIRouter(tags=["console"])

# Who sees every change; anyone else only the changes they requested or were asked to approve.
SEES_EVERY_CHANGE = ("agent", "approver", "change_manager", "admin")


def may_see(person: Principal, change: Change, requests: list[ApprovalRequest]) -> bool:
    if person.has(*SEES_EVERY_CHANGE) or person.name == change.requester:
        return True
    return any(request.approver == person.name for request in requests)


@router.get("/changes/{ref}", response_class=HTMLResponse, include_in_schema=False)
def change_page(ref: str, request: Request) -> Response:
    person = person_or_signin(request)
    if isinstance(person, RedirectResponse):
        return person
    gateway = gateway_of(request)
    lang = language_of(request, person.name)
    t = texts("changes", lang)
    page = (request, person, lang)
    with Session(gateway.engine) as session:
        try:
            change = changes.load_change(session, parse_change_ref(ref))
        except (ValueError, LookupError):
            return message_page(page, t, t["not_found_title"], t["not_found"].format(ref=ref), 404)
        assert change.id is not None
        requests = list_approval_requests(session=session, change_id=change.id)
        if not may_see(person, change, requests):
            log.warning("refused %s the page of %s: not theirs to see", person.name, change.number)
            return message_page(page, t, t["forbidden_title"], t["forbidden"], 403)
        entries = get_change_timeline(session=session, change_id=change.id)
        values = change_values(gateway, change, requests, entries, person)
    return render(
        request,
        person,
        "change.html",
        lang=lang,
        t=t,
        title=f"{change.number} {change.title}",
        **values,
    )


def change_values(
    gateway: Gateway,
    change: Change,
    requests: list[ApprovalRequest],
    entries: list[ChangeEntry],
    person: Principal,
) -> dict[str, Any]:
    """What change.html shows, every time in the change policy's zone."""
    when = when_in(gateway.policies.change.zone)
    return {
        "change": change,
        "when": when,
        "incident": incident_number(change.incident_id) if change.incident_id else None,
        "plan": plan_view(change.plan),
        "stages": stages_of(gateway, change, requests, when),
        "decide_urls": decide_urls(gateway, change, requests, person),
        "entries": entries,
        "outputs": [entry for entry in entries if "output" in (entry.data or {})],
    }


def stages_of(
    gateway: Gateway,
    change: Change,
    requests: list[ApprovalRequest],
    when: Callable[[datetime | None], str],
) -> list[dict[str, Any]]:
    """The stages this version needs, each with who was asked and who decided when; a stage
    only earlier versions had is not shown (the timeline has those decisions)."""
    current = [r for r in requests if r.version == change.version]
    shown = []
    for stage in changes.stages_for(change, gateway.policies):
        asked = [r for r in current if r.stage == stage.name]
        shown.append(
            {
                "name": stage.name,
                "quorum": stage.quorum,
                "approvers": stage.approvers,
                "requests": [
                    {
                        "approver": r.approver,
                        "state": r.decision or ("void" if r.voided_at else "pending"),
                        "at": when(r.decided_at or r.voided_at or r.sent_at),
                        "via": r.decided_via or "",
                        "comment": r.comment,
                    }
                    for r in asked
                ],
            }
        )
    return shown


def decide_urls(
    gateway: Gateway, change: Change, requests: list[ApprovalRequest], person: Principal
) -> list[dict[str, str]]:
    """The person's own live approval links: deciding there still takes the mailed code."""
    return [
        {
            "stage": r.stage,
            "url": "/approvals/"
            + changes.approval_token(r, secret=gateway.secret, policies=gateway.policies),
        }
        for r in requests
        if r.approver == person.name
        and r.locked_at is None
        and changes.why_not_open(r, change) is None
    ]
