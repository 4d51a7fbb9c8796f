"""The standard-change templates of the change policy: what a standard change may be."""

from typing import Any

from fastapi import APIRouter

from itilflow.gateway.deps import GatewayDep, Reporter
from itilflow.services import changes

router = APIRouter(prefix="/api/change-templates", tags=["changes"])


@router.get("")
def list_templates(_: Reporter, gateway: GatewayDep) -> list[dict[str, Any]]:
    """Each template: name, description, typed parameters, the CIs it may touch, who may request
    it, and its plan with `{{parameter}}` placeholders."""
    return changes.describe_templates(gateway.policies.change)
