"""Public REST: alert rules and alerts, kept and evaluated by the registry; rule changes
are audited."""

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from edgecloud_contracts.alerts import (
    AlertPage,
    AlertRulePage,
    AlertRuleView,
    AlertState,
    CreateAlertRule,
    RegisterAlertRule,
    TargetKind,
)
from edgecloud_contracts.text import OBJECT_ID
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.internal_http import ServiceClient, passed_on

from ..audit.trail import AuditDep, record_success
from ..deps import IdentityDep, OrchestratorDep, PathId, RegistryDep, SessionDep

router = APIRouter(prefix="/api/v1", tags=["alerts"])

Limit = Annotated[int, Query(ge=1, le=1000)]


async def _resolved(
    body: CreateAlertRule, identity: Identity, orchestrator: ServiceClient
) -> RegisterAlertRule:
    """The rule for the registry: a container target comes with its device and Docker
    name, from the orchestrator, which answers 404 for another tenant's container."""
    if body.target_kind is not TargetKind.CONTAINER:
        return RegisterAlertRule(**body.model_dump())
    container = (
        await orchestrator.request("GET", f"/v1/containers/{body.target}", identity=identity)
    ).json()
    return RegisterAlertRule(
        **body.model_dump(), device=container["device"], docker_name=container["name"]
    )


@router.post(
    "/alert-rules",
    status_code=status.HTTP_201_CREATED,
    response_model=AlertRuleView,
    responses={
        404: {"description": "the device or container is not the caller's to watch"},
        422: {"description": "invalid_alert_rule: the fields do not fit together"},
    },
)
async def create_rule(
    body: CreateAlertRule,
    identity: IdentityDep,
    registry: RegistryDep,
    orchestrator: OrchestratorDep,
    session: SessionDep,
    trail: AuditDep,
) -> Response:
    """Watch a device (``cpu_percent``, ``memory_percent``, ``disk_used_percent`` with an
    ``op`` and a ``threshold``, or ``offline``) or a container (``exited``,
    ``restarting``). The alert is raised once the condition has held for ``for_seconds``
    and cleared when it no longer holds; both are live events and, with a ``webhook``,
    JSON posts to it."""
    entry = trail.begin(
        "alert_rule.create", target=f"{body.target_kind.value}:{body.target}", caller=identity
    )
    rule = await _resolved(body, identity, orchestrator)
    answer = await registry.request(
        "POST", "/v1/alert-rules", identity=identity, json=rule.model_dump(mode="json")
    )
    created = answer.json()
    entry.target = f"alert_rule:{created['id']}"
    trail.note(
        target_kind=body.target_kind.value,
        target=body.target,
        metric=body.metric.value,
        webhook=body.webhook is not None,
    )
    record_success(session, trail)
    return passed_on(answer)


@router.get("/alert-rules", response_model=AlertRulePage)
async def list_rules(
    identity: IdentityDep, registry: RegistryDep, limit: Limit = 100, cursor: str | None = None
) -> Response:
    """The tenant's alert rules, the newest first."""
    params = {"limit": limit, "cursor": cursor}
    return passed_on(
        await registry.request("GET", "/v1/alert-rules", identity=identity, params=params)
    )


@router.get("/alert-rules/{rule_id}", response_model=AlertRuleView)
async def get_rule(rule_id: PathId, identity: IdentityDep, registry: RegistryDep) -> Response:
    return passed_on(await registry.request("GET", f"/v1/alert-rules/{rule_id}", identity=identity))


@router.delete("/alert-rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_rule(
    rule_id: PathId,
    identity: IdentityDep,
    registry: RegistryDep,
    session: SessionDep,
    trail: AuditDep,
) -> Response:
    """Delete the rule; its alert, if firing, is cleared. Its past alerts stay listed."""
    trail.begin("alert_rule.delete", target=f"alert_rule:{rule_id}", caller=identity)
    answer = await registry.request("DELETE", f"/v1/alert-rules/{rule_id}", identity=identity)
    record_success(session, trail)
    return passed_on(answer)


@router.get("/alerts", response_model=AlertPage)
async def list_alerts(
    identity: IdentityDep,
    registry: RegistryDep,
    state: AlertState | None = None,
    rule: Annotated[str | None, Query(max_length=64, pattern=OBJECT_ID)] = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> Response:
    """The tenant's alerts, firing and cleared, the most recently raised first;
    ``state`` and ``rule`` narrow the list."""
    params = {
        "state": state.value if state else None,
        "rule": rule,
        "limit": limit,
        "cursor": cursor,
    }
    return passed_on(await registry.request("GET", "/v1/alerts", identity=identity, params=params))
