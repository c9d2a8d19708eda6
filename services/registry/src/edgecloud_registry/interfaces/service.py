"""Declaring interfaces, and who may see which.

Operators see every interface with every tenant it is for. A tenant sees the interfaces of
the devices granted to it that are for it, each naming only itself among the tenants, so
that no tenant learns another's id or what another may use.
"""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_contracts.interfaces import InterfaceDeclaration, InterfaceKind, InterfaceView
from edgecloud_servicekit.db import utcnow
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.problems import NotFound, Unprocessable

from ..devices import service as devices
from ..devices.models import DeviceGrant
from .models import DeviceInterface


def _view(row: DeviceInterface, caller: Identity) -> InterfaceView:
    tenants = row.tenants if caller.is_operator else [caller.tenant_id]
    return InterfaceView(
        name=row.name,
        device=row.device_key,
        kind=InterfaceKind(row.kind),
        path=row.path,
        container_path=row.container_path,
        topic=row.topic,
        read_only=row.read_only,
        shareable=row.shareable,
        tenants=tenants,
        description=row.description,
    )


async def declare(
    *,
    session: AsyncSession,
    caller: Identity,
    key: str,
    name: str,
    declaration: InterfaceDeclaration,
) -> tuple[InterfaceView, bool]:
    """Declare or replace ``name`` on the device; True when it is new."""
    await devices.get_device(session=session, caller=caller, key=key)
    tenants = sorted(set(declaration.tenants))
    granted = set(
        (
            await session.scalars(
                select(DeviceGrant.tenant_id).where(
                    DeviceGrant.device_key == key, DeviceGrant.tenant_id.in_(tenants)
                )
            )
        ).all()
    )
    missing = [tenant for tenant in tenants if tenant not in granted]
    if missing:
        raise Unprocessable(
            f"the device is not granted to {', '.join(missing)}: grant it first",
            code="tenant_not_granted",
        )
    row = await session.get(DeviceInterface, (key, name))
    created = row is None
    if row is None:
        row = DeviceInterface(device_key=key, name=name)
        session.add(row)
    row.kind = declaration.kind.value
    row.path = declaration.path
    row.container_path = declaration.container_path or declaration.path
    row.topic = declaration.topic
    row.read_only = declaration.read_only
    # A sensor stream is read by the agent for each container: it is always shared.
    row.shareable = declaration.shareable or declaration.kind is InterfaceKind.SENSOR
    row.tenants = tenants
    row.description = declaration.description
    row.declared_by = caller.user_id
    row.updated_at = utcnow()
    await session.flush()
    return _view(row, caller), created


async def list_interfaces(
    *, session: AsyncSession, caller: Identity, key: str
) -> list[InterfaceView]:
    await devices.get_device(session=session, caller=caller, key=key)
    rows = await session.scalars(
        select(DeviceInterface)
        .where(DeviceInterface.device_key == key)
        .order_by(DeviceInterface.name)
    )
    return [
        _view(row, caller)
        for row in rows.all()
        if caller.is_operator or caller.tenant_id in row.tenants
    ]


async def withdraw_tenant(*, session: AsyncSession, key: str, tenant_id: str) -> None:
    """The device is no longer granted to the tenant: none of its interfaces is for it any
    more, and granting the device again does not bring them back unasked."""
    rows = await session.scalars(select(DeviceInterface).where(DeviceInterface.device_key == key))
    for row in rows.all():
        if tenant_id in row.tenants:
            row.tenants = [tenant for tenant in row.tenants if tenant != tenant_id]
            row.updated_at = utcnow()


async def remove(*, session: AsyncSession, caller: Identity, key: str, name: str) -> None:
    """Containers holding it keep their device until they stop; no new one gets it."""
    await devices.get_device(session=session, caller=caller, key=key)
    row = await session.get(DeviceInterface, (key, name))
    if row is None:
        raise NotFound(f"no interface {name} on {key}", code="interface_not_found")
    await session.delete(row)
