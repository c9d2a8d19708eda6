"""Internal REST: devices as the gateway asks for them on a user's behalf."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from edgecloud_contracts.devices import (
    DeviceDetail,
    DevicePage,
    Grant,
    GrantList,
    GrantRequest,
    MetricSeries,
    StatusHistory,
)
from edgecloud_contracts.events import DeviceGrantChanged
from edgecloud_contracts.identity import KEY_PATTERN
from edgecloud_contracts.text import OBJECT_ID

from ..deps import CallerDep, OperatorDep, SessionDep, WampDep
from ..interfaces import service as interfaces_service
from . import schemas, service
from .events import announce_grant
from .visibility import audience_of

router = APIRouter(prefix="/v1/devices", tags=["devices"])

Limit = Annotated[int, Query(ge=1, le=1000)]
DeviceKey = Annotated[str, Path(pattern=KEY_PATTERN)]


@router.get("", response_model=DevicePage)
async def list_devices(
    session: SessionDep, caller: CallerDep, limit: Limit = 100, cursor: str | None = None
) -> DevicePage:
    devices, next_cursor = await service.list_devices(
        session=session, caller=caller, limit=limit, cursor=cursor
    )
    audience = await audience_of(session=session, caller=caller)
    return DevicePage(
        items=[schemas.to_view(d, audience) for d in devices], next_cursor=next_cursor
    )


@router.get("/{key}", response_model=DeviceDetail)
async def get_device(key: DeviceKey, session: SessionDep, caller: CallerDep) -> DeviceDetail:
    device = await service.get_device(session=session, caller=caller, key=key)
    return schemas.to_detail(device, await audience_of(session=session, caller=caller))


@router.get("/{key}/metrics", response_model=MetricSeries)
async def device_metrics(
    key: DeviceKey,
    session: SessionDep,
    caller: CallerDep,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    cursor: str | None = None,
) -> MetricSeries:
    points, next_cursor = await service.metric_series(
        session=session,
        caller=caller,
        key=key,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    return MetricSeries(device=key, items=points, next_cursor=next_cursor)


@router.get("/{key}/history", response_model=StatusHistory)
async def status_history(
    key: DeviceKey, session: SessionDep, caller: CallerDep, limit: Limit = 100
) -> StatusHistory:
    changes = await service.status_history(session=session, caller=caller, key=key, limit=limit)
    return StatusHistory(device=key, items=changes)


@router.post("/{key}/grants", status_code=status.HTTP_201_CREATED, response_model=Grant)
async def grant_device(
    key: DeviceKey,
    body: GrantRequest,
    session: SessionDep,
    operator: OperatorDep,
    wamp: WampDep,
    response: Response,
) -> Grant:
    created = await service.grant(session=session, caller=operator, key=key, tenant_id=body.tenant)
    if not created:
        response.status_code = status.HTTP_200_OK
    else:
        await session.commit()
        await announce_grant(wamp, DeviceGrantChanged(key=key, tenant=body.tenant, granted=True))
    return Grant(device=key, tenant=body.tenant)


@router.get("/{key}/grants", response_model=GrantList)
async def list_grants(key: DeviceKey, session: SessionDep, operator: OperatorDep) -> GrantList:
    rows = await service.list_grants(session=session, caller=operator, key=key)
    return GrantList(items=[Grant(device=r.device_key, tenant=r.tenant_id) for r in rows])


@router.delete("/{key}/grants/{tenant}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_grant(
    key: DeviceKey,
    tenant: Annotated[str, Path(pattern=OBJECT_ID)],
    session: SessionDep,
    operator: OperatorDep,
    wamp: WampDep,
) -> None:
    """Take the device from the tenant, and with it the device's interfaces it was for."""
    await service.revoke_grant(session=session, caller=operator, key=key, tenant_id=tenant)
    await interfaces_service.withdraw_tenant(session=session, key=key, tenant_id=tenant)
    await session.commit()
    await announce_grant(wamp, DeviceGrantChanged(key=key, tenant=tenant, granted=False))
