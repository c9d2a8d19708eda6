"""Internal REST: a device's grant withdrawn from a tenant, applied to its containers there
(for the gateway, once the registry has dropped the grant)."""

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Request

from edgecloud_contracts.devices import GrantWithdrawal, WithdrawalOutcome
from edgecloud_contracts.identity import KEY_PATTERN
from edgecloud_servicekit.db import exclusive_transaction
from edgecloud_servicekit.problems import Forbidden

from ..deployments import service as deployments_service
from ..deps import CallerDep, DispatcherDep, EventsDep, RegistryDep, SessionsDep
from . import service

router = APIRouter(prefix="/v1/nodes", tags=["containers"])


@router.post("/{device}/withdrawals", response_model=WithdrawalOutcome)
async def withdraw(
    device: Annotated[str, Path(pattern=KEY_PATTERN)],
    body: GrantWithdrawal,
    request: Request,
    caller: CallerDep,
    sessions: SessionsDep,
    registry: RegistryDep,
    dispatcher: DispatcherDep,
    events: EventsDep,
) -> WithdrawalOutcome:
    """The tenant's containers on the device after its grant was withdrawn (operators
    only; refused with 409 ``device_still_granted`` while the registry still grants it):
    unsent starts, restarts, deploys and creates cancelled, sensor feeds cut, and with
    ``containers: "stop"`` each container meant to run stopped. The commands go now, or
    wait in the outbox for an offline node. Repeating it queues nothing twice."""
    if not caller.is_operator:
        raise Forbidden("only operators withdraw grants", code="operator_only")
    await service.check_withdrawn(
        registry=registry, operator=caller, device_key=device, tenant_id=body.tenant
    )
    brokers = await service.sensor_brokers(registry=registry, operator=caller, device_key=device)
    ttl = timedelta(seconds=request.app.state.settings.command_ttl_s)
    async with exclusive_transaction(sessions, service.tenant_lock(body.tenant)) as session:
        done = await service.withdraw(
            session=session,
            device_key=device,
            tenant_id=body.tenant,
            stop=body.containers == "stop",
            ttl=ttl,
            sensor_brokers=brokers,
        )
    for container in done.changed:
        await events.container(container)
    for deployment in done.deployments:
        await events.deployment(deployments_service.event(deployment))
    for command in done.cancelled:
        await events.command(command)
    for command in done.commands:
        await dispatcher.deliver(command.id, wait_s=0)
    return WithdrawalOutcome(
        device=device,
        tenant=body.tenant,
        containers=body.containers,
        stopped=done.stopped,
        unsubscribed=done.unsubscribed,
        cancelled=[command.id for command in done.cancelled],
    )
