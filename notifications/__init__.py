"""Notifications: render a template once, send it by email and to chat.

No engine code here: the flows wrap these calls in tasks with retries, so every sender RAISES
(`NotificationError`) when a message is not delivered, and returns None when it is.

    message = render_message("incident_opened", "zh_CN", {"incident": incident})
    await asend_email(message, to=["oncall@example.org"], settings=mail_settings)
    await asend_chat(title=message.chat_title, body=message.chat_body,
                     tags=route.tags, config="apprise.yml")

Templates
---------
One sandboxed jinja2 environment (StrictUndefined) loads `notifications/templates/`:

    templates/<language>/<template>.txt        {% block subject %} and {% block body %}: the
                                               subject line and the plain-text part of the mail
    templates/<language>/<template>.html       the HTML part; extends <language>/_layout.html
    templates/<language>/<template>.chat.txt   {% block title %} and {% block body %} for chat
    templates/<language>/_*.{html,txt}         partials (layout, incident card)

Languages: `LANGUAGES` ("en", "zh_CN"); an unknown one is a ValueError, not a silent fallback.
Every `.html` file is autoescaped. Text and chat output is not HTML-escaped; instead subjects and
titles are folded onto one line, and values printed in chat templates have `<` `>` replaced by
look-alikes (‹ ›) so no chat service reads them as markup or mentions. None prints as "—".
Links go through the `http_url` filter: only http(s) URLs are printed or linked.

Context: every template needs `incident`, a mapping with the keys in `INCIDENT_KEYS` (number,
title, description, priority, status, category, ci, assignee, group, url, response_due,
resolution_due; strings already formatted, or None). The extra keys per template are in
`TEMPLATE_EXTRAS`; all must be present, None is allowed unless noted:

    incident_opened      -
    escalation           step (1, 2, ...), target (who it goes to), overdue_since
    sla_breach           sla ("response" | "resolution"), due_at
    progress_reminder    last_update (time of the last progress note, or None)
    customer_update      news (bool), latest_comment, latest_comment_at, next_update_at
    customer_update_reminder  reporter_told (bool), latest_comment_at, next_update_at
    incident_resolved    resolution (notes), known_error (reference)
    survey_request       survey_url (http(s), required: the link to rate 1-5)
    follow_up_opened     score (1-5), comment
    callback_request     level, levels (of the callback), due_at, score, comment, previous
                         (what the level before ended with; None for level 1)
    mail_received        -
    reporter_comment     comment (the agent's text), author
    reply_received       comment (the mailed reply), sender (its address), resumed (it took the
                         incident off hold)
    reassigned           by (who gave it), note (why; may be empty)

Senders
-------
`asend_email`: python-emails' async SMTP path (aiosmtplib). python-emails returns
its errors in a response object; they are turned into NotificationError here.
`asend_chat`: apprise with a tagged config file and/or direct URLs, body format
text. A tag matching no service is a NotificationError: a misrouted notification is a lost one.
"""

from .chat import asend_chat
from .errors import NotificationError
from .mail import MailSettings, asend_email
from .messages import (
    INCIDENT_KEYS,
    LANGUAGES,
    TEMPLATE_EXTRAS,
    TEMPLATES,
    RenderedMessage,
    render_message,
)

__all__ = [
    "INCIDENT_KEYS",
    "LANGUAGES",
    "TEMPLATES",
    "TEMPLATE_EXTRAS",
    "MailSettings",
    "NotificationError",
    "RenderedMessage",
    "asend_chat",
    "asend_email",
    "render_message",
]
