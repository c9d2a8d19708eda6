"""Public REST: devices, answered by the registry on the caller's behalf."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_contracts.devices import (
    DeviceDetail,
    DevicePage,
    EnrolmentRequest,
    Grant,
    GrantList,
    GrantRequest,
    GrantWithdrawal,
    MetricSeries,
    OnWithdrawal,
    StatusHistory,
    WithdrawalOutcome,
)
from edgecloud_contracts.identity import KEY_PATTERN
from edgecloud_contracts.text import OBJECT_ID
from edgecloud_servicekit.problems import NotFound, RemoteProblem

from ..accounts import service as accounts_service
from ..accounts.models import Tenant
from ..audit.trail import AuditDep, record_success
from ..deps import IdentityDep, OperatorDep, OrchestratorDep, RegistryDep, SessionDep

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])

# Checked here so that nothing but a well-formed key ever reaches an internal URL.
DeviceKey = Annotated[str, Path(pattern=KEY_PATTERN, description="the device's URI-safe key")]
TenantRef = Annotated[str, Path(min_length=1, max_length=64, pattern=OBJECT_ID)]


@router.get("", response_model=DevicePage)
async def list_devices(
    identity: IdentityDep,
    registry: RegistryDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Any:
    response = await registry.request(
        "GET", "/v1/devices", identity=identity, params={"limit": limit, "cursor": cursor}
    )
    return response.json()


@router.get("/{key}", response_model=DeviceDetail)
async def get_device(key: DeviceKey, identity: IdentityDep, registry: RegistryDep) -> Any:
    return (await registry.request("GET", f"/v1/devices/{key}", identity=identity)).json()


@router.get("/{key}/metrics", response_model=MetricSeries)
async def device_metrics(
    key: DeviceKey,
    identity: IdentityDep,
    registry: RegistryDep,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    cursor: str | None = None,
) -> Any:
    params = {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "limit": limit,
        "cursor": cursor,
    }
    return (
        await registry.request(
            "GET", f"/v1/devices/{key}/metrics", identity=identity, params=params
        )
    ).json()


@router.get("/{key}/history", response_model=StatusHistory)
async def status_history(
    key: DeviceKey,
    identity: IdentityDep,
    registry: RegistryDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """Status changes and the link in use at each, newest first: why a device shows as it does."""
    return (
        await registry.request(
            "GET", f"/v1/devices/{key}/history", identity=identity, params={"limit": limit}
        )
    ).json()


class EnrolmentOut(BaseModel):
    id: str
    token: str
    expires_at: datetime
    agent_command: str
    """How to start an agent with this token, for copy and paste."""


@router.post("/enrolments", status_code=status.HTTP_201_CREATED, response_model=EnrolmentOut)
async def create_enrolment(
    request: Request,
    operator: OperatorDep,
    registry: RegistryDep,
    body: EnrolmentRequest | None = None,
) -> EnrolmentOut:
    """A one-time token that lets one new agent enrol (operators only)."""
    payload = (body or EnrolmentRequest()).model_dump()
    created = (
        await registry.request("POST", "/v1/enrolments", identity=operator, json=payload)
    ).json()
    router_url = request.app.state.settings.public_router_url
    return EnrolmentOut(
        **created,
        agent_command=f"edgecloud-agent --router {router_url} --enrol {created['token']}",
    )


@router.post("/{key}/grants", status_code=status.HTTP_201_CREATED, response_model=Grant)
async def grant_device(
    key: DeviceKey,
    body: GrantRequest,
    operator: OperatorDep,
    registry: RegistryDep,
    session: SessionDep,
    response: Response,
    trail: AuditDep,
) -> Grant:
    """Let a tenant see and use the device (operators only)."""
    trail.begin("device.grant", target=f"device:{key}", caller=operator)
    tenant = await find_tenant(session, body.tenant)
    answer = await registry.request(
        "POST", f"/v1/devices/{key}/grants", identity=operator, json={"tenant": tenant.id}
    )
    trail.note(tenant=tenant.id)
    record_success(session, trail)
    response.status_code = answer.status_code
    return Grant(device=key, tenant=tenant.id)


@router.get("/{key}/grants", response_model=GrantList)
async def list_grants(key: DeviceKey, operator: OperatorDep, registry: RegistryDep) -> Any:
    """The tenants allowed to use the device (operators only)."""
    return (await registry.request("GET", f"/v1/devices/{key}/grants", identity=operator)).json()


@router.delete(
    "/{key}/grants/{tenant}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        404: {"description": "device_not_found, tenant_not_found, grant_not_found"},
        422: {"description": "validation_failed: ``containers`` is neither stop nor keep"},
    },
)
async def revoke_grant(
    key: DeviceKey,
    tenant: TenantRef,
    operator: OperatorDep,
    registry: RegistryDep,
    orchestrator: OrchestratorDep,
    session: SessionDep,
    trail: AuditDep,
    containers: Annotated[
        OnWithdrawal,
        Query(
            description="the tenant's containers on the device: ``keep`` them running until"
            " the tenant removes them (the default), or ``stop`` them (queued if the node"
            " is offline)"
        ),
    ] = "keep",
) -> None:
    """Take the device away from a tenant, and the device's interfaces that were for it
    (operators only).

    From then on the tenant cannot act on its containers there: start, stop, restart,
    exec, a shell, a deploy and a create are refused (403 ``device_not_granted``; a create,
    404 ``device_not_found``), while reading them (the container, its logs, files, data,
    copies) and removing them stay allowed. Their sensor feeds end, and their starts,
    restarts, deploys and creates still waiting for the node are never sent.
    ``?containers=stop`` also stops each of them; ``keep`` (the default) lets them run until
    removed. The choice and what it did (``stopped``, ``unsubscribed``, ``cancelled``)
    are in the audit log entry ``device.grant.revoke``.

    A grant already withdrawn answers 404 ``grant_not_found``, after applying the
    containers' part again: a retry finishes a withdrawal whose second half failed."""
    trail.begin("device.grant.revoke", target=f"device:{key}", caller=operator)
    found = await find_tenant(session, tenant)
    trail.note(tenant=found.id, containers=containers)
    missing: RemoteProblem | None = None
    try:
        await registry.request("DELETE", f"/v1/devices/{key}/grants/{found.id}", identity=operator)
    except RemoteProblem as err:
        if err.code != "grant_not_found":
            raise
        missing = err
    # After the registry: the orchestrator refuses to apply it to a tenant still granted.
    withdrawal = GrantWithdrawal(tenant=found.id, containers=containers)
    answer = await orchestrator.request(
        "POST",
        f"/v1/nodes/{key}/withdrawals",
        identity=operator,
        json=withdrawal.model_dump(mode="json"),
    )
    outcome = WithdrawalOutcome.model_validate(answer.json())
    trail.note(
        stopped=outcome.stopped, unsubscribed=outcome.unsubscribed, cancelled=outcome.cancelled
    )
    if missing is not None:
        raise missing
    record_success(session, trail)


@router.post("/{key}/revoke", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_device(
    key: DeviceKey,
    operator: OperatorDep,
    registry: RegistryDep,
    session: SessionDep,
    trail: AuditDep,
) -> None:
    """Revoke the device's credential and disconnect it now (operators only)."""
    trail.begin("device.revoke", target=f"device:{key}", caller=operator)
    await registry.request("POST", f"/v1/devices/{key}/revoke", identity=operator)
    record_success(session, trail)


async def find_tenant(session: AsyncSession, name_or_id: str) -> Tenant:
    tenant = await accounts_service.find_tenant(session=session, name_or_id=name_or_id)
    if tenant is None:
        raise NotFound(f"tenant {name_or_id} not found", code="tenant_not_found")
    return tenant
