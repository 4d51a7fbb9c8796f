import re

import jinja2
import pytest

from itilflow.notifications import (
    LANGUAGES,
    TEMPLATE_EXTRAS,
    TEMPLATES,
    RenderedMessage,
    render_message,
)
from itilflow.notifications.messages import CHANGE_TEMPLATE_EXTRAS, TEMPLATE_DIR
from tests.support.notifications import make_context, make_incident

CJK = re.compile(r"[\u4e00-\u9fff]")
FIELDS = ("subject", "html", "text", "chat_title", "chat_body")

# Every optional value None: templates must still read well.
SPARSE_INCIDENT = make_incident(
    description=None,
    status=None,
    category=None,
    ci=None,
    assignee=None,
    url=None,
    response_due=None,
    resolution_due=None,
)
SPARSE_EXTRAS = {
    "escalation": {"overdue_since": None},
    "sla_breach": {"due_at": None},
    "progress_reminder": {"last_update": None},
    "customer_update": {
        "news": False,
        "latest_comment": None,
        "latest_comment_at": None,
        "next_update_at": None,
    },
    "customer_update_reminder": {
        "reporter_told": False,
        "latest_comment_at": None,
        "next_update_at": None,
    },
    "incident_resolved": {"resolution": None, "known_error": None},
    "follow_up_opened": {"comment": None},
}


# The incident templates; the change templates have tests of their own (test_change_messages.py).
INCIDENT_TEMPLATES = tuple(t for t in TEMPLATES if t not in CHANGE_TEMPLATE_EXTRAS)


def test_every_template_has_every_part_in_every_language() -> None:
    for language in LANGUAGES:
        for template in TEMPLATES:
            for suffix in (".txt", ".html", ".chat.txt"):
                assert (TEMPLATE_DIR / language / f"{template}{suffix}").is_file()


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("template", INCIDENT_TEMPLATES)
def test_renders_every_part(template: str, language: str) -> None:
    message = render_message(template, language, make_context(template))

    assert isinstance(message, RenderedMessage)
    for field in FIELDS:
        value = getattr(message, field)
        assert value.strip(), f"{field} is empty"
        assert "INC0001" in value, f"{field} does not name the incident"
        assert "None" not in value
    assert "\n" not in message.subject
    assert "\n" not in message.chat_title
    assert message.html.lstrip().startswith("<!DOCTYPE html>")
    assert f'<html lang="{language.replace("_", "-")}">' in message.html
    assert "<" not in message.text and "<" not in message.chat_body  # no markup in plain parts
    if language == "zh_CN":
        for field in FIELDS:
            assert CJK.search(getattr(message, field)), f"{field} is not in Chinese"
    else:
        for field in FIELDS:
            assert not CJK.search(getattr(message, field)), f"{field} has Chinese text"


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("template", INCIDENT_TEMPLATES)
def test_copes_with_none_values(template: str, language: str) -> None:
    context = make_context(template, incident=SPARSE_INCIDENT, **SPARSE_EXTRAS.get(template, {}))

    message = render_message(template, language, context)

    for field in FIELDS:
        assert "None" not in getattr(message, field)
    assert "href" not in message.html.replace('href="https://itilflow.example/surveys', "")


def test_escapes_html_in_the_html_part_only() -> None:
    incident = make_incident(
        title="<script>alert(1)</script>",
        description='<img src=x onerror="alert(2)">',
    )

    message = render_message("incident_opened", "en", {"incident": incident})

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in message.html
    assert "<script" not in message.html
    assert "<img" not in message.html
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in message.html
    # The plain-text part is text/plain: it shows the title as the reporter typed it.
    assert "<script>alert(1)</script>" in message.text
    assert "<script>alert(1)</script>" in message.subject


@pytest.mark.parametrize("language", LANGUAGES)
def test_chat_parts_carry_no_markup(language: str) -> None:
    incident = make_incident(title="<script>alert(1)</script>", description="<!channel> <b>x</b>")
    context = make_context("follow_up_opened", incident=incident, comment="<https://evil|click>")

    message = render_message("follow_up_opened", language, context)

    for part in (message.chat_title, message.chat_body):
        assert "<" not in part and ">" not in part
    assert "‹script›alert(1)‹/script›" in message.chat_body
    assert "‹https://evil|click›" in message.chat_body


def test_folds_a_multi_line_title_into_one_subject_line() -> None:
    incident = make_incident(title="disk full\r\nBcc: everyone@example.org")

    message = render_message("incident_opened", "en", {"incident": incident})

    assert message.subject == "[P1] New incident INC0001: disk full Bcc: everyone@example.org"
    assert "\n" not in message.chat_title


def test_links_only_http_urls() -> None:
    incident = make_incident(url="javascript:alert(1)")

    message = render_message("incident_opened", "en", {"incident": incident})

    assert "javascript" not in message.html
    assert "javascript" not in message.text
    assert "javascript" not in message.chat_body


def test_survey_request_needs_an_http_link() -> None:
    context = make_context("survey_request", survey_url="ftp://example.org/survey")

    with pytest.raises(ValueError, match="http"):
        render_message("survey_request", "en", context)


def test_survey_request_links_the_survey() -> None:
    message = render_message("survey_request", "zh_CN", make_context("survey_request"))

    assert 'href="https://itilflow.example/surveys/INC0001?token=abc"' in message.html
    assert "https://itilflow.example/surveys/INC0001?token=abc" in message.text
    assert "1–5" in message.chat_body


def test_sla_name_is_translated() -> None:
    context = make_context("sla_breach", sla="response")

    assert "missed its response target" in render_message("sla_breach", "en", context).subject
    assert "已超过响应时限" in render_message("sla_breach", "zh_CN", context).subject


def test_unknown_language_is_an_error_naming_the_languages() -> None:
    with pytest.raises(ValueError, match=r"unknown language 'de'; languages: en, zh_CN"):
        render_message("incident_opened", "de", make_context("incident_opened"))


def test_unknown_template_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown template 'incident_closed'"):
        render_message("incident_closed", "en", make_context("incident_opened"))


def test_incident_missing_keys_is_an_error() -> None:
    incident = make_incident()
    del incident["ci"], incident["group"]

    with pytest.raises(ValueError, match="lacks key.*ci, group"):
        render_message("incident_opened", "en", {"incident": incident})


def test_missing_incident_is_an_error() -> None:
    with pytest.raises(ValueError, match="incident"):
        render_message("incident_opened", "en", {})


@pytest.mark.parametrize(
    ("template", "key"),
    [(template, key) for template, keys in TEMPLATE_EXTRAS.items() for key in keys],
)
def test_missing_extra_key_fails_loudly(template: str, key: str) -> None:
    context = make_context(template)
    del context[key]

    with pytest.raises(jinja2.UndefinedError, match=key) as raised:
        render_message(template, "en", context)

    assert any(f"templates/en/{template}." in note for note in raised.value.__notes__)
