"""The problem_opened template in both languages, for every event, coping with None values."""

from __future__ import annotations

import re

import jinja2
import pytest

from itilflow.notifications import LANGUAGES, render_message
from itilflow.notifications.messages import TEMPLATE_DIR, TEMPLATES

CJK = re.compile(r"[\u4e00-\u9fff]")
FIELDS = ("subject", "html", "text", "chat_title", "chat_body")


def make_problem(**overrides) -> dict:
    problem = {
        "number": "PRB-000007",
        "title": "Repeated incidents on shop-payment",
        "description": "3 incidents with configuration item shop-payment within 7d.",
        "status": "open",
        "match": "configuration item shop-payment",
        "owner": "Chen Jie",
        "group": "applications",
        "incident_count": 3,
        "incidents": [
            {"number": "INC-000003", "title": "Checkout fails", "opened_at": "2026-11-22 09:00"},
            {"number": "INC-000001", "title": "HTTP 500", "opened_at": "2026-11-17 10:00"},
        ],
        "workaround": "Restart the payment service",
        "url": "https://itilflow.example/problems/PRB-000007",
    }
    return problem | overrides


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("event", ["opened", "updated", "reopened"])
def test_renders_every_part(language: str, event: str) -> None:
    message = render_message(
        "problem_opened", language, {"problem": make_problem(), "event": event}
    )
    for field in FIELDS:
        value = getattr(message, field)
        assert "PRB-000007" in value and "None" not in value
        assert bool(CJK.search(value)) == (language == "zh_CN"), field
    assert "INC-000003" in message.text and "Restart the payment service" in message.html
    assert "<" not in message.text and "<" not in message.chat_body


def test_the_subject_says_what_happened() -> None:
    def subject(event: str) -> str:
        return render_message(
            "problem_opened", "en", {"problem": make_problem(), "event": event}
        ).subject

    assert subject("opened").startswith("[PRB-000007] New problem:")
    assert subject("updated").startswith("[PRB-000007] New incidents for problem:")
    assert subject("reopened").startswith("[PRB-000007] Problem reopened:")


@pytest.mark.parametrize("language", LANGUAGES)
def test_copes_with_none_values(language: str) -> None:
    sparse = make_problem(
        description=None, owner=None, incidents=[], workaround=None, url=None, status=None
    )
    message = render_message("problem_opened", language, {"problem": sparse, "event": "opened"})
    for field in FIELDS:
        assert "None" not in getattr(message, field)
    assert "href" not in message.html


def test_escapes_html_and_needs_its_keys() -> None:
    problem = make_problem(title="<script>alert(1)</script>")
    html = render_message("problem_opened", "en", {"problem": problem, "event": "opened"}).html
    assert "<script>" not in html and "&lt;script&gt;" in html
    with pytest.raises(ValueError, match="lacks key.*match"):
        problem = make_problem()
        del problem["match"]
        render_message("problem_opened", "en", {"problem": problem, "event": "opened"})
    with pytest.raises(ValueError, match="needs context\\['problem'\\]"):
        render_message("problem_opened", "en", {"incident": {}, "event": "opened"})
    with pytest.raises(jinja2.UndefinedError, match="event"):
        render_message("problem_opened", "en", {"problem": make_problem()})


def test_files_exist_and_stay_out_of_the_incident_templates() -> None:
    assert "problem_opened" not in TEMPLATES
    for language in LANGUAGES:
        for suffix in (".txt", ".html", ".chat.txt"):
            assert (TEMPLATE_DIR / language / f"problem_opened{suffix}").is_file()


@pytest.mark.parametrize("language", LANGUAGES)
def test_incident_opened_shows_a_known_errors_workaround(language: str) -> None:
    from tests.support.notifications import make_incident

    known_error = {
        "problem": "PRB-000007",
        "article": "KB-000002",
        "title": "Repeated incidents on shop-payment",
        "workaround": "Restart the payment service",
        "reason": "same alert fingerprint",
    }
    context = {"incident": make_incident(), "known_error": known_error}
    message = render_message("incident_opened", language, context)
    for field in ("html", "text", "chat_body"):
        assert "Restart the payment service" in getattr(message, field)
        assert "PRB-000007" in getattr(message, field)
    plain = render_message("incident_opened", language, {**context, "known_error": None})
    assert "PRB-000007" not in plain.text + plain.html + plain.chat_body
