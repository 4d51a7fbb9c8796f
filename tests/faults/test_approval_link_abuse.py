"""Approval links tampered with, expired, replayed, forwarded (re-addressed or as they are), or
fetched by mail scanners and link-preview bots: no decision is taken, the change's approvals stay
as they were, and each attempt gets a clear page or a 4xx. A link forwarded as it is decides
nothing without the one-time code mailed to its own approver.

tests/changes/test_approval_links.py checks each rule once; this is the volume version, with
the fetchers' real habits (HEAD, OPTIONS, prefetch headers, preview user agents, blank form
posts) and one count of decisions taken over all of them.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session, func, select

from itilflow import clock, signing
from itilflow.models import ApprovalRequest, Change, ChangeEntry, session_scope
from itilflow.services import changes
from tests.support.approval_codes import codes_sent_to, make_waiting_change, wait_for_code
from tests.support.csrf import post_form

from .gateway_support import PLAN

PREVIEW_FETCHERS = [
    "Mozilla/5.0 (compatible; Microsoft Office/16.0; Outlook SafeLinks)",
    "Proofpoint URL Defense/1.0",
    "Mimecast-URL-Protect/2.0",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Mozilla/5.0 (Windows NT 10.0) SkypeUriPreview Preview/0.5 (Teams)",
    "WhatsApp/2.23.20.0",
    "facebookexternalhit/1.1",
    "curl/8.5.0",
]
# What a page that refuses says, one of these titles, and then why.
REFUSAL_TITLES = ("This link cannot be used", "No decision needed", "Your decision was not")
CHEN = "chen@example.com"


def approvals(rt: Any) -> tuple[Any, ...]:
    """Everything a decision would change: the requests, the changes and their timelines."""
    with Session(rt.engine) as session:
        requests = session.exec(select(ApprovalRequest).order_by(ApprovalRequest.id)).all()
        change_rows = session.exec(select(Change).order_by(Change.id)).all()
        return (
            [(r.id, r.decision, r.decided_at, r.voided_at, r.comment) for r in requests],
            [(c.id, c.status, c.version) for c in change_rows],
            session.exec(select(func.count()).select_from(ChangeEntry)).one(),
        )


def decided(rt: Any) -> int:
    with Session(rt.engine) as session:
        return session.exec(
            select(func.count())
            .select_from(ApprovalRequest)
            .where(ApprovalRequest.decision.is_not(None))  # type: ignore[union-attr]
        ).one()


@pytest.fixture
def waiting_change(rt: Any) -> Callable[[], tuple[int, dict[str, str]]]:
    """Makes a change awaiting its technical lead, chen or sun; returns its id and the links'
    tokens by approver."""

    def make() -> tuple[int, dict[str, str]]:
        change, tokens = make_waiting_change(rt, PLAN)
        assert change.id is not None
        return change.id, tokens

    return make


def readdressed(token: str, **changes_to_payload: Any) -> str:
    """The token with its payload edited and the original signature kept."""
    body, _, mac = token.partition(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload.update(changes_to_payload)
    edited = base64.urlsafe_b64encode(
        json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    )
    return f"{edited.rstrip(b'=').decode()}.{mac}"


def clear_refusal(response: Any) -> str | None:
    """None when `response` is a clear refusal (or, for a GET, the confirmation page that
    decides nothing); else what is wrong with it."""
    if response.status_code == 200:
        if response.request.method == "GET" and '<form method="post">' in response.text:
            return None
        return f"{response.status_code} where a confirmation page or a 4xx was due"
    if response.status_code == 405:
        return None  # HEAD, OPTIONS: FastAPI's "Method Not Allowed"
    if response.status_code in (400, 403, 409):  # 403: a POST without the CSRF field
        if any(title in response.text for title in REFUSAL_TITLES) and 'id="message"' in (
            response.text
        ):
            return None
        return f"{response.status_code} without a page saying why: {response.text[:200]}"
    return f"unexpected {response.status_code}: {response.text[:200]}"


def decide_as_chen(client: Any, smtp_server: Any, token: str, decision: str) -> Any:
    """What chen does: press the button, read the code in his mail, enter it."""
    sent = len(codes_sent_to(smtp_server, CHEN))
    pressed = post_form(client, f"/approvals/{token}", {"decision": decision})
    assert pressed.status_code == 200, pressed.text
    code = wait_for_code(smtp_server, CHEN, nth=sent + 1)
    return post_form(client, f"/approvals/{token}", {"decision": decision, "code": code})


def test_abused_links_take_no_decision(
    client: Any, rt: Any, waiting_change: Any, fault_figures: Any, smtp_server: Any
) -> None:
    attempts: dict[str, int] = {}
    answers: Counter[int] = Counter()
    problems: list[str] = []
    taken = 0

    def attempt(kind: str, method: str, token: str, **kwargs: Any) -> None:
        nonlocal taken
        before = decided(rt)
        response = client.request(method, f"/approvals/{token}", **kwargs)
        attempts[kind] = attempts.get(kind, 0) + 1
        answers[response.status_code] += 1
        taken += decided(rt) - before
        if why := clear_refusal(response):
            problems.append(f"{kind} {method}: {why}")

    # Scanners and link previews: every way they fetch, the decision in the URL or not.
    _, tokens = waiting_change()
    before = approvals(rt)
    for agent in PREVIEW_FETCHERS:
        headers = {"User-Agent": agent, "Authorization": ""}
        for query in ("", "?decision=approve", "?decision=reject"):
            attempt("scanner", "GET", tokens["chen"] + query, headers=headers)
        attempt("scanner", "HEAD", tokens["chen"] + "?decision=approve", headers=headers)
        attempt("scanner", "OPTIONS", tokens["chen"], headers=headers)
        attempt("scanner", "GET", tokens["chen"], headers=headers | {"Sec-Purpose": "prefetch"})
        # A scanner that submits the form as it finds it: no button pressed.
        attempt("scanner", "POST", tokens["chen"] + "?decision=approve", headers=headers)
        attempt("scanner", "POST", tokens["chen"], headers=headers, data={"comment": ""})
    assert approvals(rt) == before, "a scanner changed the approvals"
    assert smtp_server.mails == [], "a scanner had a code mailed"

    # Tampered: edited payloads with the old signature, a cut or forged signature.
    _, tokens = waiting_change()
    before = approvals(rt)
    body, _, mac = tokens["chen"].partition(".")
    tampered = [
        readdressed(tokens["chen"], version=99),
        readdressed(tokens["chen"], exp=2**40),
        body + "." + mac[:-2],
        body + "." + mac[::-1],
        body[:-3] + "." + mac,
        body,
        "." + mac,
        signing.sign(
            {"request": 1, "nonce": "n", "change": 1, "version": 1, "approver": "chen"},
            secret="a key found on the internet",
            purpose="approval",
            valid_for=timedelta(days=1),
        ),
        signing.sign({"incident": 1}, secret=rt.secret, purpose="survey", valid_for=timedelta(1)),
    ]
    for token in tampered:
        for decision in ("approve", "reject"):
            attempt("tampered", "GET", f"{token}?decision={decision}")
            attempt("tampered", "POST", token, data={"decision": decision})
    assert approvals(rt) == before, "a tampered link changed the approvals"

    # Forwarded to sun, who re-addresses it to himself or points it at his own request.
    change_id, tokens = waiting_change()
    before = approvals(rt)
    with Session(rt.engine) as session:
        suns = session.exec(
            select(ApprovalRequest).where(
                ApprovalRequest.change_id == change_id, ApprovalRequest.approver == "sun"
            )
        ).one()
    for token in (
        readdressed(tokens["chen"], approver="sun"),
        readdressed(tokens["chen"], request=suns.id),
        readdressed(tokens["chen"], approver="sun", request=suns.id),
    ):
        attempt("forwarded", "GET", token)
        attempt("forwarded", "POST", token, data={"decision": "approve"})
    assert approvals(rt) == before, "a forwarded link changed the approvals"

    # Replayed: chen decides once; the same link again, either way, and after an edit.
    change_id, tokens = waiting_change()
    first = decide_as_chen(client, smtp_server, tokens["chen"], "approve")
    assert first.status_code == 200, first.text
    before = approvals(rt)
    for decision in ("approve", "reject", "approve", "reject", "approve"):
        attempt("replayed", "POST", tokens["chen"], data={"decision": decision})
    attempt("replayed", "GET", tokens["chen"])
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        changes.edit_change(session=session, change=change, changes={"title": "v2"}, actor="t")
    before = approvals(rt)
    for approver in ("chen", "sun"):  # links of the old version, used or not
        attempt("replayed", "POST", tokens[approver], data={"decision": "approve"})
    assert approvals(rt) == before, "a replayed link changed the approvals"

    # Expired: both links, a minute past their validity, each way.
    _, tokens = waiting_change()
    clock.advance(rt.policies.change.timing.link_valid_for + timedelta(minutes=1))
    before = approvals(rt)
    for token in tokens.values():
        attempt("expired", "GET", token)
        for decision in ("approve", "reject"):
            attempt("expired", "POST", token, data={"decision": decision})
    assert approvals(rt) == before, "an expired link changed the approvals"

    fault_figures(
        "approval links abused",
        **{f"{kind}_attempts": count for kind, count in attempts.items()},
        answers=" ".join(f"{code}x{n}" for code, n in sorted(answers.items())),
        decisions_taken=taken,
    )
    assert taken == 0
    assert not problems, "\n".join(problems)


def test_a_link_forwarded_as_it_is_takes_no_decision(
    client: Any, rt: Any, waiting_change: Any, smtp_server: Any, fault_figures: Any
) -> None:
    """chen forwards his mail to sun. sun can open the page and press its buttons, but the code
    goes to chen's own address: without it nothing is decided, however sun tries."""
    change_id, tokens = waiting_change()
    link = f"/approvals/{tokens['chen']}"
    before = approvals(rt)
    answers: Counter[int] = Counter()

    def sun(data: dict[str, str], **kwargs: Any) -> Any:
        response = post_form(client, link, data, **kwargs)
        answers[response.status_code] += 1
        assert "chen@example.com" not in response.text, "the page showed chen's address"
        for code in codes_sent_to(smtp_server, CHEN):
            assert code not in response.text, "the page showed the code"
        return response

    page = client.get(link)
    assert "chen, as technical-lead" in page.text  # the page says whose link it is
    assert "c***@example.com" in page.text

    # sun presses the buttons again and again, naming himself wherever a form or header could.
    presses = 0
    for decision in ("approve", "reject") * 5:
        sun(
            {"decision": decision, "email": "sun@example.com", "approver": "sun"},
            headers={"From": "sun@example.com", "Reply-To": "sun@example.com"},
        )
        presses += 1
    smtp_server.wait_for(1)
    code_mails = [m.rcpt_tos for m in smtp_server.mails]
    assert code_mails == [(CHEN,)], f"one code, to chen only (a minute's rate limit): {code_mails}"
    assert approvals(rt)[0] == before[0], "pressing the button decided"

    # sun guesses: the code is void after the policy's attempts, even for the right one.
    attempts = rt.policies.change.approval_links.code_attempts
    (real,) = codes_sent_to(smtp_server, CHEN)
    guesses = [f"{(int(real) + n) % 10**6:06d}" for n in range(1, attempts + 1)]
    for guess in guesses + [real]:
        assert sun({"decision": "approve", "code": guess}).status_code == 409
    wrong_codes = len(guesses)

    # chen (who got the code, and did not share it) asks for a new one a minute later; the code
    # asked to approve cannot reject, and once used it decides nothing more.
    clock.advance(rt.policies.change.approval_links.code_resend_after + timedelta(seconds=1))
    assert post_form(client, link, {"decision": "approve"}).status_code == 200
    code = wait_for_code(smtp_server, CHEN, nth=2)
    switched = sun({"decision": "reject", "code": code})
    assert switched.status_code == 409 and "asked to approve" in switched.text
    # chen's code on sun's own link: a code belongs to one link.
    on_suns_link = post_form(
        client, f"/approvals/{tokens['sun']}", {"decision": "approve", "code": code}
    )
    assert on_suns_link.status_code == 409
    assert decided(rt) == 0, "someone without chen's code decided"

    assert post_form(client, link, {"decision": "approve", "code": code}).status_code == 200
    replays = 0
    for decision in ("approve", "reject", "approve"):
        replayed = sun({"decision": decision, "code": code})
        assert replayed.status_code == 409 and "already used" in replayed.text
        replays += 1
    assert decided(rt) == 1

    fault_figures(
        "approval link forwarded as it is",
        presses_without_code=presses,
        code_mails=len(codes_sent_to(smtp_server, CHEN)),
        code_mails_to_others=sum(1 for m in smtp_server.mails if CHEN not in m.rcpt_tos),
        wrong_codes=wrong_codes,
        switched_decision=1,
        replays=replays,
        answers=" ".join(f"{c}x{n}" for c, n in sorted(answers.items())),
        decisions_without_code=0,
        decisions_by_chen=decided(rt),
    )
