"""Recording a new container: every check that counts what is stored already, the
container, its create command and what it holds on its node (hardware interfaces,
published ports), all in one transaction.

One create of a tenant at a time runs between its checks and its commit, so creates racing
for a quota's last place (containers, the tenant's share of the node) cannot all pass. The
device's grant is asked again under that lock, which a withdrawal of the grant takes too
(..withdrawals): a create that raced the withdrawal is refused or is there for it to see.
Tenants racing for one host port are told apart by the port's row (.ports): whoever
commits first holds it, and the other create is refused, nothing of it kept.
"""

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.artifacts import TransferRef
from edgecloud_contracts.containers import CreateContainer
from edgecloud_servicekit.db import exclusive_transaction
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.internal_http import ServiceClient

from ..commands.models import CommandRow
from ..withdrawals import service as withdrawals_service
from . import interfaces, ports, service
from .fitting import NodeShares, check_fits
from .models import Container


async def record(
    *,
    sessions: async_sessionmaker[AsyncSession],
    caller: Identity,
    request: CreateContainer,
    device: Mapping[str, Any],
    shares: NodeShares,
    ttl: timedelta,
    holds: interfaces.Resolved,
    registry: ServiceClient,
    image_archive: TransferRef | None = None,
    build_context: TransferRef | None = None,
) -> tuple[Container, CommandRow]:
    """The new container (pending) on ``device`` and its create command (queued),
    committed; a problem, and nothing stored, when any check fails."""
    key = str(device["key"])
    lock = withdrawals_service.tenant_lock(caller.tenant_id)
    async with exclusive_transaction(sessions, lock) as session:
        await withdrawals_service.check_granted(registry=registry, caller=caller, device_key=key)
        await service.check_new(session=session, caller=caller, request=request, device_key=key)
        await check_fits(
            session=session,
            caller=caller,
            limits=request.limits,
            ports=request.ports,
            device=device,
            shares=shares,
        )
        container, command = service.new_container(
            session,
            caller=caller,
            request=request,
            device_key=key,
            ttl=ttl,
            image_archive=image_archive,
            build_context=build_context,
            devices=holds.devices,
        )
        await interfaces.hold(
            session, container_id=container.id, device_key=key, exclusive=holds.exclusive
        )
        await ports.reserve(session, container_id=container.id, device_key=key, ports=request.ports)
    return container, command
