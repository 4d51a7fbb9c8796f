"""Context factories for notification templates (see itilflow.notifications.TEMPLATE_EXTRAS)."""

from __future__ import annotations

from typing import Any

from itilflow.notifications import TEMPLATE_EXTRAS

_EXTRAS: dict[str, Any] = {
    "step": 2,
    "target": "Duty Manager",
    "overdue_since": "2026-11-23 09:30 UTC",
    "sla": "resolution",
    "due_at": "2026-11-23 13:00 UTC",
    "last_update": "2026-11-23 10:15 UTC",
    "resolution": "Restarted the primary database and cleared the stuck lock.",
    "known_error": "KE-0042",
    "survey_url": "https://itilflow.example/surveys/INC0001?token=abc",
    "score": 2,
    "comment": "It took three days.",
    "level": 2,
    "levels": 3,
    "previous": "level 1 (chen): not satisfied: wants a root cause",
    "author": "Chen Jie",
    "sender": "ada@customer.example",
    "resumed": True,
    "by": "Lin Hua",
    "note": "Liu knows this database best.",
    "approver": "chen",
    "stage": "technical-lead",
    "approve_url": "https://itilflow.example/approvals/tok?decision=approve",
    "reject_url": "https://itilflow.example/approvals/tok?decision=reject",
    "reasons": "+3 for a high-criticality CI; +1 normal change",
    "reminder": False,
    "decision": "approve",
    "code": "042917",
    "valid_minutes": 10,
    "outcome": "rolled back",
    "summary": "Verification failed; 2 steps rolled back.",
    "codes": 10,
    "contacts": "zhou",
    "news": True,
    "latest_comment": "The vendor confirmed the fault; a fix is being rolled out.",
    "latest_comment_at": "2026-11-23 10:20 UTC",
    "next_update_at": "2026-11-23 11:00 UTC",
    "reporter_told": True,
    "requester": "owner",
    "accept_url": "https://itilflow.example/acceptance/tok?decision=accept",
    "accept_by": "2026-11-29 22:00 CST",
    "done": "bump version; verified: health",
}


def make_change(**overrides: Any) -> dict[str, Any]:
    """A change context mapping with every key set; `overrides` replace keys."""
    change: dict[str, Any] = {
        "number": "CHG-000001",
        "title": "Upgrade the payment service",
        "category": "normal",
        "status": "awaiting_approval",
        "version": 2,
        "risk_level": "medium",
        "risk_score": 4.5,
        "cis": "shop-payment",
        "planned_start": "2026-11-24 22:00 CST",
        "planned_end": "2026-11-24 23:00 CST",
        "url": "https://itilflow.example/changes/CHG-000001",
    }
    return change | overrides


def make_incident(**overrides: Any) -> dict[str, Any]:
    """An incident context mapping with every key set; `overrides` replace keys."""
    incident: dict[str, Any] = {
        "number": "INC0001",
        "title": "Checkout database unreachable",
        "description": "Orders fail with a timeout since 09:00.\nAll shops are affected.",
        "priority": "P1",
        "status": "in_progress",
        "category": "database",
        "ci": "db-orders-01",
        "assignee": "alice",
        "group": "DBA",
        "url": "https://itilflow.example/incidents/INC0001",
        "response_due": "2026-11-23 09:30 UTC",
        "resolution_due": "2026-11-23 13:00 UTC",
    }
    return incident | overrides


def make_context(template: str, *, incident: dict[str, Any] | None = None, **extras: Any) -> dict:
    """The full context `template` needs: an incident plus its extra keys (overridable)."""
    from itilflow.notifications.messages import CHANGE_TEMPLATE_EXTRAS

    context: dict[str, Any] = (
        {"change": make_change()}
        if template in CHANGE_TEMPLATE_EXTRAS
        else {"incident": incident if incident is not None else make_incident()}
    )
    for key in TEMPLATE_EXTRAS[template]:
        context[key] = extras.pop(key, _EXTRAS[key])
    if extras:
        raise TypeError(f"{template} does not take {sorted(extras)}")
    return context
