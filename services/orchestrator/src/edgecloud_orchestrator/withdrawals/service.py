"""A device's grant taken from a tenant: what the tenant may still do with its containers
there, and what the withdrawal does to them.

The registry owns the grants; the orchestrator asks it at each action (:func:`check_granted`)
instead of keeping a copy. Nothing is cached, so nothing outlives a withdrawal, a lost event
or a restart; the price is one internal request on actions that go to a node anyway.

Reads stay allowed (the container, its logs, its files and data, its copies), and so does
removing it. Acting on it is refused once the grant is gone: start, stop, restart, exec, a
shell, a deploy; a create there is refused by the registry itself (the device is not shown).

An action that queues a command asks inside its tenant's lock (:func:`tenant_lock`), the
one :func:`withdraw` holds too. Either the action's command is queued first, and the
withdrawal then cancels it (if still unsent) or stops the container after it; or the
withdrawal, which runs after the registry has dropped the grant, comes first, and the
action is refused.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_contracts.containers import Action, CommandState
from edgecloud_contracts.devices import DeviceDetail
from edgecloud_servicekit.db import utcnow
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.internal_http import ServiceClient
from edgecloud_servicekit.problems import RemoteProblem

from ..commands import service as commands_service
from ..commands.models import CommandRow
from ..containers import service as containers_service
from ..containers.models import Container
from ..deployments import service as deployments_service
from ..deployments.models import Deployment
from .exceptions import DeviceNotGranted, StillGranted

CANCELLED = (Action.CREATE, Action.START, Action.RESTART, Action.DEPLOY)
"""Queued for the node and not sent yet when the grant goes: never sent. A stop, a remove,
a copy out (a read) and an unsubscribe still go."""


def tenant_lock(tenant_id: str) -> str:
    """The lock a tenant's creates and queued actions hold, and a withdrawal for it."""
    return f"containers.create:{tenant_id}"


async def check_granted(
    *, registry: ServiceClient, caller: Identity, device_key: str, container_id: str | None = None
) -> None:
    """Whether ``device_key`` is granted to the caller's tenant now, as the registry says
    (operators see every device). If not: for an action on the tenant's ``container_id``
    there, :class:`DeviceNotGranted`; for a create, the registry's own answer (404
    ``device_not_found``, as for any device the tenant is not shown)."""
    try:
        await registry.request("GET", f"/v1/devices/{device_key}", identity=caller)
    except RemoteProblem as err:
        if err.status == 404 and container_id is not None:
            raise DeviceNotGranted(device_key, container_id) from err
        raise


async def check_withdrawn(
    *, registry: ServiceClient, operator: Identity, device_key: str, tenant_id: str
) -> None:
    """The grant is gone in the registry (a withdrawal is applied only after that)."""
    answer = await registry.request("GET", f"/v1/devices/{device_key}/grants", identity=operator)
    if any(grant["tenant"] == tenant_id for grant in answer.json()["items"]):
        raise StillGranted(device_key, tenant_id)


async def sensor_brokers(
    *, registry: ServiceClient, operator: Identity, device_key: str
) -> frozenset[str]:
    """Where containers that moved away from the device read its sensors: its broker's
    peer addresses (a migration's ``sensor_broker``), as an operator sees them."""
    device = DeviceDetail.model_validate(
        (await registry.request("GET", f"/v1/devices/{device_key}", identity=operator)).json()
    )
    return frozenset(url for url in [device.peer_url, *device.peer_urls] if url)


@dataclass(slots=True)
class Withdrawal:
    """What a withdrawal did; the commands to send now."""

    stopped: list[str] = field(default_factory=list)
    """Containers a stop was queued for."""
    unsubscribed: list[str] = field(default_factory=list)
    """Containers whose sensor feed is cut."""
    cancelled: list[CommandRow] = field(default_factory=list)
    """Commands that were waiting for the node, failed unsent."""
    commands: list[CommandRow] = field(default_factory=list)
    changed: list[Container] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)


async def withdraw(
    *,
    session: AsyncSession,
    device_key: str,
    tenant_id: str,
    stop: bool,
    ttl: timedelta,
    sensor_brokers: frozenset[str] = frozenset(),
) -> Withdrawal:
    """The tenant's containers on ``device_key`` after its grant there was withdrawn: their
    unsent starts, restarts, deploys and creates are cancelled, their sensor feeds cut
    (an unsubscribe for the node, and no subscriptions in the spec a migration would carry
    elsewhere), and with ``stop`` each one meant to run is stopped. The tenant's containers
    that moved away but still read the device's sensors from its broker (one of
    ``sensor_brokers``, the device's peer addresses) have their feeds cut too. Repeating it
    queues nothing twice."""
    done = Withdrawal()
    if sensor_brokers:
        await _cut_remote_feeds(session, device_key, tenant_id, sensor_brokers, ttl, done)
    rows = (
        await session.scalars(
            select(Container)
            .where(
                Container.device_key == device_key,
                Container.tenant_id == tenant_id,
                Container.removed_at.is_(None),
            )
            .order_by(Container.created_at)
        )
    ).all()
    by_id = {row.id: row for row in rows}
    waiting = await session.scalars(
        select(CommandRow)
        .where(
            CommandRow.container_id.in_(by_id),
            CommandRow.device_key == device_key,
            CommandRow.state == CommandState.QUEUED.value,
            CommandRow.action.in_([action.value for action in CANCELLED]),
        )
        .order_by(CommandRow.seq)
    )
    now = utcnow()
    for command in waiting.all():
        command.state = CommandState.FAILED.value
        command.error_code = DeviceNotGranted.default_code
        command.error = "the device's grant was withdrawn before the command was sent"
        command.finished_at = now
        done.cancelled.append(command)
        container = by_id[command.container_id]
        if command.action == Action.CREATE:
            # Nothing of it exists on the node: free its name and what it held.
            container.state, container.removed_at = containers_service.FAILED, now
            container.error = "create: the device's grant was withdrawn before it was sent"
            container.updated_at = now
            done.changed.append(container)
        elif command.action == Action.DEPLOY:
            deployment = await deployments_service.fail_for_command(
                session=session,
                command_id=command.id,
                error_code=DeviceNotGranted.default_code,
                error="the device's grant was withdrawn before the deploy was sent",
            )
            if deployment is not None:
                done.deployments.append(deployment)
    for container in rows:
        if container.removed_at is not None:
            continue
        if container.spec.get("subscriptions") or container.spec.get("sensor_broker"):
            container.spec = {**container.spec, "subscriptions": [], "sensor_broker": None}
            container.updated_at = now
            done.unsubscribed.append(container.id)
            done.commands.append(_queue(session, container, Action.UNSUBSCRIBE, ttl))
        wanted_running = container.desired_state == containers_service.RUNNING
        if stop and wanted_running and container.state != containers_service.STORED:
            container.desired_state, container.updated_at = containers_service.STOPPED, now
            done.stopped.append(container.id)
            done.commands.append(_queue(session, container, Action.STOP, ttl))
            if container not in done.changed:
                done.changed.append(container)
    return done


async def _cut_remote_feeds(
    session: AsyncSession,
    device_key: str,
    tenant_id: str,
    brokers: frozenset[str],
    ttl: timedelta,
    done: Withdrawal,
) -> None:
    moved = await session.scalars(
        select(Container).where(
            Container.tenant_id == tenant_id,
            Container.device_key != device_key,
            Container.removed_at.is_(None),
        )
    )
    for container in moved.all():
        if container.spec.get("sensor_broker") in brokers:
            container.spec = {**container.spec, "subscriptions": [], "sensor_broker": None}
            container.updated_at = utcnow()
            done.unsubscribed.append(container.id)
            done.commands.append(_queue(session, container, Action.UNSUBSCRIBE, ttl))


def _queue(
    session: AsyncSession, container: Container, action: Action, ttl: timedelta
) -> CommandRow:
    return commands_service.enqueue(
        session,
        tenant_id=container.tenant_id,
        container_id=container.id,
        device_key=container.device_key,
        docker_name=container.docker_name,
        action=action,
        ttl=ttl,
    )
