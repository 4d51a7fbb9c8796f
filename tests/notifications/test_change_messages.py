"""The change templates: approval requests and outcomes, in both languages."""

from __future__ import annotations

import re

import pytest

from itilflow.notifications import LANGUAGES, render_message
from tests.support.notifications import make_change, make_context

CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(
    "template", ["approval_request", "change_outcome", "approval_code", "approval_link_locked"]
)
def test_change_templates_render_in_every_part(template, language):
    message = render_message(template, language, make_context(template))
    for part in (message.subject, message.text, message.html, message.chat_title):
        assert "CHG-000001" in part
        assert "None" not in part
    assert bool(CJK.search(message.text)) == (language == "zh_CN")


def test_approval_mail_links_both_decisions_and_escapes_the_title():
    context = make_context("approval_request")
    context["change"] = make_change(title="<script>alert(1)</script>")
    message = render_message("approval_request", "en", context)
    assert "decision=approve" in message.html and "decision=reject" in message.html
    assert "<script>" not in message.html
    assert "&lt;script&gt;" in message.html


def test_a_change_template_needs_a_change():
    with pytest.raises(ValueError, match="change"):
        render_message("approval_request", "en", {"incident": {}})


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_code_mail_shows_the_code_and_escapes_the_title(language):
    context = make_context("approval_code", decision="reject")
    context["change"] = make_change(title="<b>x</b>")
    message = render_message("approval_code", language, context)
    assert "042917" in message.text and "042917" in message.html
    assert "042917" not in message.chat_body  # chat channels are shared: never the code
    assert "<b>x</b>" not in message.html and "&lt;b&gt;x&lt;/b&gt;" in message.html
