"""Prometheus Alertmanager's webhook: the alerts go to the one alert writer (gateway/writer.py),
which stores them with the webhooks that arrive meanwhile; the rules (open, dedupe, resolve or
annotate) are services/alerts.py's."""

from collections import Counter

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from itilflow.gateway.deps import API_PREFIX, Reporter, gateway_of
from itilflow.metrics import ALERTS
from itilflow.services.alerts import AlertmanagerWebhook, AlertOutcome, outcomes_of

router = APIRouter(prefix=API_PREFIX, tags=["alerts"])


class AlertmanagerResult(BaseModel):
    # An alert's outcome is the alert rules' own schema (services/alerts.py, with the payload's).
    alerts: list[AlertOutcome]


@router.post(
    "/alertmanager",
    response_model=AlertmanagerResult,
    summary="Prometheus Alertmanager webhook receiver (payload version 4)",
    responses={503: {"description": "nothing was stored (database unavailable): resend"}},
)
async def alertmanager_webhook(
    body: AlertmanagerWebhook, _: Reporter, request: Request
) -> AlertmanagerResult:
    gateway = gateway_of(request)
    # No worker thread and no session per request: the alerts go to the one writer thread,
    # which stores them with the webhooks that arrive meanwhile, in one transaction.
    try:
        results = await gateway.alert_writer.awrite(body.alerts)
    except SQLAlchemyError as exc:
        # Nothing of this webhook was stored; Alertmanager sends it again on a 5xx.
        ALERTS.labels("refused_unavailable").inc(len(body.alerts))
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the alerts could not be stored, nothing was: send them again",
            headers={"Retry-After": "5"},
        ) from exc
    for outcome, count in Counter(outcome for outcome, _ in results).items():
        ALERTS.labels(outcome).inc(count)
    return AlertmanagerResult(alerts=outcomes_of(body.alerts, results, gateway.incident_url))
