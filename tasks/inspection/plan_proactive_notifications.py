"""Plan the mails of new proactive notices: the proposal to the CI's owner group (with the link
to accept or decline it) and the notice to the customer contact, in their language. Keyed per
notice, so a retried run or a redelivery sends nothing twice."""

from __future__ import annotations

from typing import Any

from prefect import task
from sqlmodel import Session

from itilflow.models import ProactiveNotice, Subject, notified_keys, session_scope
from itilflow.notifications import render_message
from itilflow.notifications.plans import NotificationPlan, channels_left, make_plan
from itilflow.notifications.proactive_context import group_emails, proactive_context
from itilflow.runtime import Runtime, runtime

ACTOR = "flow:patrol-inspection"


@task(name="plan-proactive-notifications", retries=2, retry_delay_seconds=1)
def plan_proactive_notifications(events: list[dict[str, Any]]) -> list[NotificationPlan]:
    rt = runtime()
    proposed = [event["proactive_id"] for event in events if event["event"] == "proposed"]
    if not proposed:
        return []
    with session_scope(rt.engine) as session:
        delivered = notified_keys(
            session=session, subjects={Subject("proactive", i) for i in proposed}
        )
        plans = [plan for i in proposed for plan in _plans(session, rt, i)]
    return [plan for plan in plans if channels_left(plan, delivered)]


def _plans(session: Session, rt: Runtime, notice_id: int) -> list[NotificationPlan]:
    notice = session.get(ProactiveNotice, notice_id)
    if notice is None:
        return []
    policy = rt.policies.proactive
    template = rt.policies.change.templates.get(notice.template)
    missing = sorted(set(template.parameters) - set(notice.parameters)) if template else []
    context = {
        "proactive": proactive_context(
            notice, public_url=rt.settings.public_url or "", missing=missing
        )
    }
    subject = Subject("proactive", notice_id)
    plans = [
        make_plan(
            subject,
            number=notice.number,
            key="proposal",
            template="proactive_proposal",
            actor=ACTOR,
            emails=group_emails(session, notice.owner_group),
            tags=list(policy.notify_tags),
            message=render_message("proactive_proposal", policy.language, context),
        )
    ]
    if notice.customer_contact:
        plans.append(
            make_plan(
                subject,
                number=notice.number,
                key="customer",
                template="proactive_notice",
                actor=ACTOR,
                emails=[notice.customer_contact],
                tags=[],
                message=render_message("proactive_notice", notice.customer_language, context),
            )
        )
    return plans
