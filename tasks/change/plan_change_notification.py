"""The change's outcome is told by mail and chat."""

from __future__ import annotations

import asyncio

from prefect import task

from itilflow.models import session_scope
from itilflow.notifications import NotificationError, asend_chat, asend_email, render_message
from itilflow.notifications.change_context import change_context
from itilflow.runtime import runtime
from itilflow.services import changes
from itilflow.tasks.change.record_change_outcome import summary_of


@task(name="notify-change", retries=3, retry_delay_seconds=[2, 10, 30])
async def notify_change(change_id: int, outcome: str) -> None:
    """Tell the requester by email and the policy's chat tags; raise so the engine retries."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        context = {
            "change": change_context(
                change, policies=rt.policies, public_url=rt.settings.public_url or ""
            ),
            "outcome": outcome.replace("_", " "),
            "summary": summary_of(change) if change.review else outcome.replace("_", " "),
        }
        address = change.requester_email
    message = render_message("change_outcome", rt.policies.change.language, context)
    sends = []
    if address:
        sends.append(asend_email(message, to=[address], settings=rt.mail))
    if rt.policies.change.notify_tags and rt.settings.apprise_config:
        sends.append(
            asend_chat(
                title=message.chat_title,
                body=message.chat_body,
                tags=rt.policies.change.notify_tags,
                config=rt.settings.apprise_config,
            )
        )
    errors = [
        r
        for r in await asyncio.gather(*sends, return_exceptions=True)
        if isinstance(r, BaseException)
    ]
    if errors:
        raise NotificationError("; ".join(str(e) for e in errors))
