"""Public REST: a node's hardware interfaces and sensor streams, and who holds them.

The registry keeps the declarations; the orchestrator knows which containers hold them.
Operators declare (tenants by name or id); tenants read the interfaces they may use, each
holder of another tenant shown without a name.
"""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response, status

from edgecloud_contracts.interfaces import (
    INTERFACE_NAME_PATTERN,
    InterfaceDeclaration,
    InterfaceView,
    InterfaceWithHolders,
)

from ..audit.trail import AuditDep, record_success
from ..deps import IdentityDep, OperatorDep, OrchestratorDep, RegistryDep, SessionDep
from .router import DeviceKey, find_tenant

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])

InterfaceName = Annotated[str, Path(pattern=INTERFACE_NAME_PATTERN)]


@router.get("/{key}/interfaces", response_model=list[InterfaceWithHolders])
async def list_interfaces(
    key: DeviceKey, identity: IdentityDep, registry: RegistryDep, orchestrator: OrchestratorDep
) -> Any:
    """The device's interfaces you may use (operators: all), with the containers holding
    each."""
    declared, held = await asyncio.gather(
        registry.request("GET", f"/v1/devices/{key}/interfaces", identity=identity),
        orchestrator.request("GET", f"/v1/nodes/{key}/interface-holders", identity=identity),
    )
    holders = held.json()
    return [{**item, "holders": holders.get(item["name"], [])} for item in declared.json()]


@router.put(
    "/{key}/interfaces/{name}",
    status_code=status.HTTP_201_CREATED,
    response_model=InterfaceView,
    responses={
        200: {"model": InterfaceView, "description": "replaced"},
        422: {"description": "tenant_not_granted: grant the device to the tenant first"},
    },
)
async def declare_interface(
    key: DeviceKey,
    name: InterfaceName,
    body: InterfaceDeclaration,
    operator: OperatorDep,
    registry: RegistryDep,
    session: SessionDep,
    trail: AuditDep,
) -> Response:
    """Declare (or replace) an interface of the device and the tenants that may use it
    (operators only). Containers holding it keep what they have until they stop."""
    trail.begin("device.interface.declare", target=f"device:{key}", caller=operator)
    tenants = [(await find_tenant(session, tenant)).id for tenant in body.tenants]
    declaration = body.model_copy(update={"tenants": tenants})
    answer = await registry.request(
        "PUT",
        f"/v1/devices/{key}/interfaces/{name}",
        identity=operator,
        json=declaration.model_dump(mode="json"),
    )
    trail.note(interface=name, kind=body.kind.value, tenants=tenants)
    record_success(session, trail)
    return Response(answer.content, answer.status_code, media_type="application/json")


@router.delete("/{key}/interfaces/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_interface(
    key: DeviceKey,
    name: InterfaceName,
    operator: OperatorDep,
    registry: RegistryDep,
    session: SessionDep,
    trail: AuditDep,
) -> None:
    """Withdraw an interface (operators only): no new container gets it."""
    trail.begin("device.interface.remove", target=f"device:{key}", caller=operator)
    await registry.request("DELETE", f"/v1/devices/{key}/interfaces/{name}", identity=operator)
    trail.note(interface=name)
    record_success(session, trail)
