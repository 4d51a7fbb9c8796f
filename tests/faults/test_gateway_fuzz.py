"""schemathesis against the gateway's own OpenAPI: no input makes any route answer 5xx.

Every operation gets a bounded number of generated requests, valid ones (they reach the code
behind the validation) and invalid ones (they must be refused with a 4xx); the operations that
name a stored object then get the same again on real ones (an incident, a change, a problem, a
survey and an approval link), since random references only ever find nothing. Every 5xx, or
error escaping the app, is collected with its request, so one run shows them all.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from sqlmodel import col, select

from itilflow.gateway.app import create_app
from itilflow.models import ApprovalRequest, Incident, session_scope

from .gateway_support import RecordingChangeEngine, bearer, seed_objects

EXAMPLES_PER_OPERATION = 30
# One request that takes this long means a hang or a lock wait, not slowness.
REQUEST_DEADLINE_MS = 5_000
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


def fuzz(label: str, strategy: SearchStrategy[Any], failures: list[str]) -> int:
    """Send up to EXAMPLES_PER_OPERATION generated requests; note every 5xx in `failures`.
    Returns how many were sent."""
    sent = 0

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=REQUEST_DEADLINE_MS,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: every failure is kept
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def call(case: Any) -> None:
        nonlocal sent
        sent += 1
        try:
            response = case.call()
        except Exception as exc:  # noqa: BLE001 (an escaping error is a 500 in production)
            failures.append(f"{label} raised {exc!r}\n  {case.as_curl_command()}")
            return
        if response.status_code >= 500:
            failures.append(
                f"{label} -> {response.status_code} {response.text[:200]}\n"
                f"  {case.as_curl_command()}"
            )

    try:
        call()
    except Unsatisfiable:
        pass  # no request of this kind exists (GET /health takes no input to get wrong)
    return sent


def test_no_input_makes_a_route_answer_5xx(rt: Any, fault_figures: Any) -> None:
    app = create_app(rt.settings, rt.policies, change_engine=RecordingChangeEngine())
    headers = bearer(rt)
    # The app's lifespan runs its intake writers: keep it open while fuzzing.
    with TestClient(app, headers=headers) as client:
        seeds = seed_objects(client, rt)
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        # /health/ready takes no input; its 503 says what it checks is down (no Prefect server
        # runs here), which no request chooses.
        operations = [
            op
            for op in (result.ok() for result in schema.get_all_operations())
            if op.path != "/health/ready"
        ]
        runs: list[tuple[Any, dict[str, str] | None]] = [(op, None) for op in operations]
        runs += [
            (op, fixed)
            for op in operations
            for prefix, fixed in seeds.items()
            if op.path.startswith(prefix) and "{" in op.path
        ]
        failures: list[str] = []
        requests = 0
        started = time.monotonic()
        for operation, path_parameters in runs:
            for mode in MODES:
                strategy = operation.as_strategy(
                    generation_mode=mode, headers=headers, path_parameters=path_parameters
                )
                requests += fuzz(operation.label, strategy, failures)
        fault_figures(
            "schemathesis on the gateway",
            operations=len(operations),
            runs=len(runs) * len(MODES),
            requests=requests,
            server_errors=len(failures),
            seconds=round(time.monotonic() - started, 1),
        )
        assert not failures, "\n".join(failures)


FORM_FIELDS = st.sampled_from(["score", "comment", "decision", "", "score[]", "x" * 300])


@st.composite
def form_bodies(draw: st.DrawFn) -> bytes:
    """What a browser, a scanner or an attacker may post to a link's page: form fields with
    any values (repeated, empty, huge, not UTF-8), or any bytes at all."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=3000))
    fields = draw(
        st.lists(
            st.tuples(FORM_FIELDS, st.one_of(st.sampled_from(["1", "5", "approve"]), st.text())),
            max_size=6,
        )
    )
    body = urlencode(fields).encode()
    return body + draw(st.sampled_from([b"", b"&%ff%fe=%c3", b"&comment=" + b"\xff" * 50]))


def test_the_link_pages_take_any_form_body_without_5xx(rt: Any, fault_figures: Any) -> None:
    """The survey and approval POSTs read their form themselves, so the OpenAPI has no body for
    schemathesis to fuzz: these bodies go to them with live links and with broken ones."""
    app = create_app(rt.settings, rt.policies, change_engine=RecordingChangeEngine())
    failures: list[str] = []
    sent = 0
    with TestClient(app, headers=bearer(rt), raise_server_exceptions=False) as client:
        seeds = seed_objects(client, rt)
        paths = [
            f"/surveys/{seeds['/surveys/']['token']}",
            f"/approvals/{seeds['/approvals/']['token']}",
            "/surveys/broken.link",
            "/approvals/broken.link",
        ]

        @given(path=st.sampled_from(paths), body=form_bodies())
        @settings(
            max_examples=4 * EXAMPLES_PER_OPERATION,
            deadline=REQUEST_DEADLINE_MS,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def post(path: str, body: bytes) -> None:
            nonlocal sent
            sent += 1
            response = client.post(
                path, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
            )
            if response.status_code >= 500:
                failures.append(f"POST {path} {body[:100]!r} -> {response.status_code}")

        post()
    with session_scope(rt.engine) as session:
        surveyed = session.exec(select(Incident).where(col(Incident.survey_score).is_not(None)))
        answered = len(surveyed.all())
        decisions = session.exec(
            select(ApprovalRequest).where(col(ApprovalRequest.decision).is_not(None))
        ).all()
    fault_figures(
        "form bodies on the link pages",
        requests=sent,
        server_errors=len(failures),
        surveys_answered=answered,
        decisions=len(decisions),
    )
    assert not failures, "\n".join(failures)
    assert answered <= 1 and len(decisions) <= 1  # a live link answers once, whatever comes
