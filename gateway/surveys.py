"""Satisfaction survey pages, reached from the signed link mailed on resolution.

The GET shows the form and changes nothing (mail scanners fetch every link); the POST records the
answer once (services/surveys.py records it, and opens a follow-up on a low score).
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from jinja2 import select_autoescape
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy.engine import Engine
from sqlmodel import Session

from itilflow import signing
from itilflow.models import Incident
from itilflow.policies import Policies
from itilflow.services import surveys
from itilflow.settings import Settings

_pages = SandboxedEnvironment(autoescape=select_autoescape(default=True, default_for_string=True))

_PAGE = _pages.from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem}
.scores label{display:inline-block;margin-right:1rem}</style></head>
<body><h1>{{ title }}</h1>
{% if incident %}<p><strong>{{ incident.number }}</strong>: {{ incident.title }}</p>{% endif %}
{% if message %}<p>{{ message }}</p>{% endif %}
{% if form %}
<form method="post">
<p>How satisfied are you with how this was handled? / 您对本次处理是否满意？</p>
<p class="scores">{% for score in range(1, 6) %}
<label><input type="radio" name="score" value="{{ score }}" required> {{ score }}</label>
{% endfor %}</p>
<p><label>Comment / 意见<br><textarea name="comment" rows="4" cols="40" maxlength="2000">
</textarea></label></p>
<p><button type="submit">Send / 提交</button></p>
</form>
{% endif %}
</body></html>"""
)


def page(
    title: str,
    *,
    incident: Incident | None = None,
    message: str = "",
    form: bool = False,
    status_code: int = 200,
) -> HTMLResponse:
    return HTMLResponse(
        _PAGE.render(title=title, incident=incident, message=message, form=form),
        status_code=status_code,
    )


def add_routes(app: FastAPI, *, engine: Engine, settings: Settings, policies: Policies) -> None:
    assert settings.secret_key is not None
    secret = settings.secret_key.get_secret_value()

    def resolve_token(token: str, session: Session) -> Incident | HTMLResponse:
        try:
            payload = signing.verify(token, secret=secret, purpose=surveys.PURPOSE)
        except signing.BadToken as exc:
            return page("Survey link not valid", message=f"{exc}.", status_code=400)
        incident = session.get(Incident, payload.get("incident"))
        if incident is None:
            return page(
                "Survey link not valid", message="The incident no longer exists.", status_code=404
            )
        return incident

    @app.get("/surveys/{token}", response_class=HTMLResponse, tags=["surveys"])
    def show_survey(token: str) -> HTMLResponse:
        with Session(engine) as session:
            found = resolve_token(token, session)
            if isinstance(found, HTMLResponse):
                return found
            if found.survey_score is not None:
                return page(
                    "Thank you", incident=found, message="Your answer has already been recorded."
                )
            return page("Rate our service", incident=found, form=True)

    @app.post("/surveys/{token}", response_class=HTMLResponse, tags=["surveys"])
    async def answer_survey(token: str, request: Request) -> HTMLResponse:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        score_text = (form.get("score") or [""])[0]
        comment = (form.get("comment") or [""])[0].strip()[:2000]
        if score_text not in {"1", "2", "3", "4", "5"}:
            return page(
                "Please choose a score", message="Choose a score from 1 to 5.", status_code=422
            )
        return _record(token, int(score_text), comment)

    def _record(token: str, score: int, comment: str) -> HTMLResponse:
        with Session(engine, expire_on_commit=False) as session:
            found = resolve_token(token, session)
            if isinstance(found, HTMLResponse):
                return found
            recorded = surveys.record_answer(
                session, found, score=score, comment=comment, policies=policies
            )
            if not recorded:
                session.rollback()
                return page(
                    "Thank you", incident=found, message="Your answer has already been recorded."
                )
            session.commit()
        return page("Thank you", incident=found, message="Your answer has been recorded.")
