"""Rendering notification templates into one message for every channel.

See the package docstring for the template layout and the context each template needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Template, TemplateError, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from itilflow.notifications.templating import template_environment

TEMPLATE_DIR = Path(__file__).parent / "templates"

LANGUAGES: tuple[str, ...] = ("en", "zh_CN")

INCIDENT_KEYS: frozenset[str] = frozenset(
    {
        "number",
        "title",
        "description",
        "priority",
        "status",
        "category",
        "ci",
        "assignee",
        "group",
        "url",
        "response_due",
        "resolution_due",
    }
)

# Context keys each template needs besides `incident`; every one must be present (None is allowed
# except for survey_url and score). StrictUndefined enforces their presence when rendering.
TEMPLATE_EXTRAS: Mapping[str, tuple[str, ...]] = {
    # incident_opened may also be given `known_error` (None, or a mapping with problem, article,
    # title, workaround and reason: the known error the incident matched).
    "incident_opened": (),
    "escalation": ("step", "target", "overdue_since"),
    "sla_breach": ("sla", "due_at"),
    "progress_reminder": ("last_update",),
    # To the reporter: news (a comment to them since the last update), the latest such comment
    # and when it was written (None: none yet), when the next update is due.
    "customer_update": ("news", "latest_comment", "latest_comment_at", "next_update_at"),
    # To the assignee when an update had nothing new; reporter_told: the reporter was mailed.
    "customer_update_reminder": ("reporter_told", "latest_comment_at", "next_update_at"),
    "incident_resolved": ("resolution", "known_error"),
    "survey_request": ("survey_url",),
    "follow_up_opened": ("score", "comment"),
    # A survey callback's level, to its person: the level of `levels`, the deadline, the answer
    # that started it and what the level before ended with (None for level 1).
    "callback_request": ("level", "levels", "due_at", "score", "comment", "previous"),
    # To the reporter of a mailed request: its reference (notifications/mail_thread.py).
    "mail_received": (),
    # An agent's comment to the reporter, mailed in the incident's thread.
    "reporter_comment": ("comment", "author"),
    # A reporter's mailed reply, to the incident's assignee (tasks/mail/store_mail.py).
    "reply_received": ("comment", "sender", "resumed"),
    # An incident given to someone by hand (the console's reassign), to them.
    "reassigned": ("by", "note"),
}
# Change templates are about `change`, a mapping with CHANGE_KEYS, instead of `incident`.
CHANGE_KEYS: frozenset[str] = frozenset(
    {
        "number",
        "title",
        "category",
        "status",
        "version",
        "risk_level",
        "risk_score",
        "cis",
        "planned_start",
        "planned_end",
        "url",
    }
)
CHANGE_TEMPLATE_EXTRAS: Mapping[str, tuple[str, ...]] = {
    "approval_request": ("approver", "stage", "approve_url", "reject_url", "reasons", "reminder"),
    "change_outcome": ("outcome", "summary"),
    # The one-time code the approval page mails to the approver (decision: approve | reject).
    "approval_code": ("approver", "decision", "code", "valid_minutes"),
    # An approval link locked after its code cap, to the approver and the change managers.
    "approval_link_locked": ("approver", "stage", "codes", "contacts"),
    # The requester asked to accept an implemented, verified change (decision: accept | reject).
    "acceptance_request": ("requester", "accept_url", "reject_url", "accept_by", "done"),
    "acceptance_code": ("requester", "decision", "code", "valid_minutes"),
}
TEMPLATE_EXTRAS = {**TEMPLATE_EXTRAS, **CHANGE_TEMPLATE_EXTRAS}
TEMPLATES: tuple[str, ...] = tuple(TEMPLATE_EXTRAS)
# Problem templates are about `problem`, a mapping with PROBLEM_KEYS (`incidents` is a list of
# mappings with number, title, opened_at). They stay out of TEMPLATE_EXTRAS and TEMPLATES, whose
# tests give every template an incident or a change; render_message knows them all.
PROBLEM_KEYS: frozenset[str] = frozenset(
    {
        "number",
        "title",
        "description",
        "status",
        "match",
        "owner",
        "group",
        "incident_count",
        "incidents",
        "workaround",
        "url",
    }
)
# event: "opened" | "updated" (new incidents linked) | "reopened" (recurred after the fix).
PROBLEM_TEMPLATE_EXTRAS: Mapping[str, tuple[str, ...]] = {"problem_opened": ("event",)}
# Proactive notices are about `proactive`, a mapping with PROACTIVE_KEYS: to the owner group the
# proposal (with the link to accept or decline), to the customer the notice.
PROACTIVE_KEYS: frozenset[str] = frozenset(
    {
        "number",
        "ci",
        "kind",
        "item",
        "predicted_at",
        "window_start",
        "window_end",
        "time_zone",
        "template",
        "parameters",
        "missing",
        "owner_group",
        "url",
    }
)
PROACTIVE_TEMPLATE_EXTRAS: Mapping[str, tuple[str, ...]] = {
    "proactive_proposal": (),
    "proactive_notice": (),
}
ALL_TEMPLATE_EXTRAS: Mapping[str, tuple[str, ...]] = {
    **TEMPLATE_EXTRAS,
    **PROBLEM_TEMPLATE_EXTRAS,
    **PROACTIVE_TEMPLATE_EXTRAS,
}

# Shown for a None value, so a template never prints "None".
MISSING = "—"

_CHAT_SUFFIX = ".chat.txt"


@dataclass(frozen=True)
class RenderedMessage:
    """One notification rendered for email (subject, html, text) and chat (title, body)."""

    subject: str
    html: str
    text: str
    chat_title: str
    chat_body: str


def render_message(template: str, language: str, context: Mapping[str, Any]) -> RenderedMessage:
    """Render `template` in `language` with `context` for every channel.

    Raises ValueError for an unknown template or language, or an `incident` missing keys, and
    jinja2.UndefinedError when the template reads a context key that was not given.
    """
    if template not in ALL_TEMPLATE_EXTRAS:
        raise ValueError(
            f"unknown template {template!r}; templates: {', '.join(ALL_TEMPLATE_EXTRAS)}"
        )
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; languages: {', '.join(LANGUAGES)}")
    subject_name, keys = (
        ("change", CHANGE_KEYS)
        if template in CHANGE_TEMPLATE_EXTRAS
        else ("problem", PROBLEM_KEYS)
        if template in PROBLEM_TEMPLATE_EXTRAS
        else ("proactive", PROACTIVE_KEYS)
        if template in PROACTIVE_TEMPLATE_EXTRAS
        else ("incident", INCIDENT_KEYS)
    )
    about = context.get(subject_name)
    if not isinstance(about, Mapping):
        raise ValueError(f"template {template!r} needs context[{subject_name!r}] as a mapping")
    if missing := sorted(keys - about.keys()):
        raise ValueError(f"context[{subject_name!r}] lacks key(s): {', '.join(missing)}")

    base = f"{language}/{template}"
    variables = dict(context)
    subject = _one_line(_render_block(f"{base}.txt", "subject", variables))
    text = _tidy(_render_block(f"{base}.txt", "body", variables))
    chat_title = _one_line(_render_block(f"{base}{_CHAT_SUFFIX}", "title", variables))
    chat_body = _tidy(_render_block(f"{base}{_CHAT_SUFFIX}", "body", variables))
    html = _render(f"{base}.html", variables | {"subject": subject, "language": language})
    return RenderedMessage(subject, html, text, chat_title, chat_body)


def _render(name: str, variables: dict[str, Any]) -> str:
    template = _environment().get_template(name)
    with _naming(name):
        return template.render(variables)


def _render_block(name: str, block: str, variables: dict[str, Any]) -> str:
    template: Template = _environment().get_template(name)
    if block not in template.blocks:
        raise ValueError(f"template {name} has no {{% block {block} %}}")
    with _naming(name):
        return "".join(template.blocks[block](template.new_context(variables)))


@contextmanager
def _naming(name: str) -> Iterator[None]:
    """Add the template file to a rendering error: jinja's own message does not name it."""
    try:
        yield
    except TemplateError as exc:
        exc.add_note(f"while rendering notifications/templates/{name}")
        raise


@pass_context
def _finalize(context: Context, value: Any) -> Any:
    if value is None:
        return MISSING
    if context.name is not None and context.name.endswith(_CHAT_SUFFIX):
        return _defuse_markup(str(value))
    return value


def _defuse_markup(value: str) -> str:
    # Chat bodies go out as plain text, but Slack (`<!channel>`, `<url|label>`), Teams and
    # HTML-rendering services would still read angle brackets as markup. Look-alike brackets
    # keep the text readable everywhere; HTML entities would show literally on plain channels
    # and be escaped twice by apprise's text-to-HTML conversion.
    return value.replace("<", "‹").replace(">", "›")


def _http_url(value: Any, required: bool = False) -> str | None:
    """The value if it is an http(s) URL, else None: no javascript: or data: links in a mail.

    With `required=True` a missing or unusable URL is an error (a survey mail without its link
    is worthless).
    """
    # str() also makes a StrictUndefined value fail loudly; filters receive it unchecked.
    url = "" if value is None else str(value).strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is not None and parts.scheme in {"http", "https"} and parts.netloc:
        return url
    if required:
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    return None


def _one_line(value: str) -> str:
    # Subjects and titles are headers: a newline from a title must not start a new header line.
    return " ".join(value.split())


_BLANK_RUNS = re.compile(r"\n{3,}")


def _tidy(value: str) -> str:
    # Template conditionals leave trailing spaces and blank runs; plain text should look written.
    lines = [line.rstrip() for line in value.strip().splitlines()]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines))


@cache
def _environment() -> ImmutableSandboxedEnvironment:
    """The one environment for every notification template (built on first use, not import)."""
    # Every .html template (and partial) is escaped; text and chat output are plain text.
    environment = template_environment(TEMPLATE_DIR, finalize=_finalize)
    environment.filters["http_url"] = _http_url
    return environment
