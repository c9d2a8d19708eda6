"""Containers: checking a request, choosing the device, and keeping the cloud's view of
each container in step with its node."""

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_contracts.artifacts import TransferRef
from edgecloud_contracts.containers import (
    Action,
    CommandResult,
    ContainerReport,
    ContainerSpec,
    ContainerView,
    CreateContainer,
    Limits,
)
from edgecloud_contracts.interfaces import DeviceMapping
from edgecloud_servicekit.db import utcnow
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.pagination import newest_first

from ..commands import service as commands_service
from ..commands.models import CommandRow
from . import ports
from .exceptions import (
    ContainerNotFound,
    ContainerRemoved,
    ContainerStored,
    HoldsHardware,
    MovedElsewhere,
    NameTaken,
    QuotaExceeded,
)
from .models import Container, PlacementRecord

RUNNING, STOPPED, REMOVED = "running", "stopped", "removed"
PENDING, FAILED = "pending", "failed"
STORED = "stored"
"""Level 1: its package waits on a keeper node, which does not run it, until it is handed
on (the migration-scheduler); nothing of it runs meanwhile."""


def docker_name(owner: str, name: str) -> str:
    return f"{owner}-{name}"


async def check_new(
    *, session: AsyncSession, caller: Identity, request: CreateContainer, device_key: str
) -> None:
    """Everything that must hold before a create is stored or sent (the interfaces and
    topics are checked by :func:`.interfaces.resolve`)."""
    quota = caller.quotas.get("containers")
    if quota is not None:
        used = await session.scalar(
            select(func.count())
            .select_from(Container)
            .where(Container.tenant_id == caller.tenant_id, Container.removed_at.is_(None))
        )
        if (used or 0) >= quota:
            raise QuotaExceeded(quota)
    name = docker_name(caller.username, request.name)
    clash = await session.scalar(
        select(Container.id).where(
            Container.device_key == device_key,
            Container.docker_name == name,
            Container.removed_at.is_(None),
        )
    )
    if clash is not None:
        raise NameTaken(name, device_key)


def new_container(
    session: AsyncSession,
    *,
    caller: Identity,
    request: CreateContainer,
    device_key: str,
    ttl: timedelta,
    image_archive: TransferRef | None = None,
    build_context: TransferRef | None = None,
    devices: list[DeviceMapping] | None = None,
) -> tuple[Container, CommandRow]:
    """The container (pending) and its create command (queued), in the caller's transaction."""
    container_id = str(uuid.uuid4())
    name = docker_name(caller.username, request.name)
    spec = ContainerSpec(
        container_id=container_id,
        docker_name=name,
        image=request.image,
        command=request.command,
        env=request.env,
        limits=request.limits,
        auto_remove=request.auto_remove,
        restart_policy="no" if request.auto_remove else request.restart_policy,
        network=request.network,
        ports=request.ports,
        subscriptions=request.subscriptions,
        tenant_id=caller.tenant_id,
        owner=caller.username,
        image_archive=image_archive,
        build_context=build_context,
        devices=devices or [],
    )
    now = utcnow()
    container = Container(
        id=container_id,
        tenant_id=caller.tenant_id,
        owner_id=caller.user_id,
        owner=caller.username,
        name=request.name,
        docker_name=name,
        device_key=device_key,
        image=request.image,
        spec=spec.model_dump(mode="json"),
        desired_state=RUNNING,
        state=PENDING,
        created_at=now,
        updated_at=now,
    )
    session.add(container)
    session.add(
        PlacementRecord(
            container_id=container_id, generation=1, device_key=device_key, placed_at=now
        )
    )
    command = commands_service.enqueue(
        session,
        tenant_id=caller.tenant_id,
        container_id=container_id,
        device_key=device_key,
        docker_name=name,
        action=Action.CREATE,
        ttl=ttl,
        spec=spec.model_dump(mode="json"),
    )
    return container, command


async def get(*, session: AsyncSession, caller: Identity, container_id: str) -> Container:
    row = await session.get(Container, container_id)
    if row is None or row.tenant_id != caller.tenant_id or row.removed_at is not None:
        raise ContainerNotFound(container_id)
    return row


async def get_any(*, session: AsyncSession, container_id: str) -> Container:
    """A live container of any tenant: for operators' (the scheduler's) own reads."""
    row = await session.get(Container, container_id)
    if row is None or row.removed_at is not None:
        raise ContainerNotFound(container_id)
    return row


async def get_including_removed(
    *, session: AsyncSession, caller: Identity, container_id: str
) -> Container:
    """Also a removed container (its logs may outlive it)."""
    row = await session.get(Container, container_id)
    if row is None or row.tenant_id != caller.tenant_id:
        raise ContainerNotFound(container_id)
    return row


# Built once: the read behind every container GET.
_WITH_WAITING = select(Container, commands_service.latest_pending(Container.id)).where(
    Container.id == bindparam("container_id"),
    Container.tenant_id == bindparam("tenant_id"),
    Container.removed_at.is_(None),
)


async def get_with_waiting(
    *, session: AsyncSession, caller: Identity, container_id: str
) -> tuple[Container, str | None]:
    """The container and its newest waiting command, in one query."""
    params = {"container_id": container_id, "tenant_id": caller.tenant_id}
    row = (await session.execute(_WITH_WAITING, params)).first()
    if row is None:
        raise ContainerNotFound(container_id)
    return row[0], row[1]


async def list_for(
    *, session: AsyncSession, caller: Identity, limit: int, cursor: str | None, device: str | None
) -> tuple[list[Container], str | None]:
    query = select(Container).where(
        Container.tenant_id == caller.tenant_id, Container.removed_at.is_(None)
    )
    if device:
        query = query.where(Container.device_key == device)
    return await newest_first(
        session,
        query,
        at=Container.created_at,
        id_=Container.id,
        limit=limit,
        cursor=cursor,
        scope=f"containers:{caller.tenant_id}",
    )


def act(
    session: AsyncSession, *, caller: Identity, container: Container, action: Action, ttl: timedelta
) -> CommandRow:
    """Queue start, stop, restart or remove; the desired state changes at once."""
    if container.removed_at is not None or (
        container.desired_state == REMOVED and action != Action.REMOVE
    ):
        raise ContainerRemoved(container.id)
    if container.state == STORED and action != Action.REMOVE:
        raise ContainerStored(container.id, container.device_key)
    if action in (Action.START, Action.RESTART):
        container.desired_state = RUNNING
    elif action == Action.STOP:
        container.desired_state = STOPPED
    elif action == Action.REMOVE:
        container.desired_state = REMOVED
    container.updated_at = utcnow()
    return commands_service.enqueue(
        session,
        tenant_id=caller.tenant_id,
        container_id=container.id,
        device_key=container.device_key,
        docker_name=container.docker_name,
        action=action,
        ttl=ttl,
    )


def _observe(container: Container, report: ContainerReport | None) -> None:
    if report is None:
        return
    container.state = report.state
    container.docker_id = report.docker_id
    container.exit_code = report.exit_code
    if container.image_id is None:
        container.image_id = report.image_id


async def apply_result(
    *, session: AsyncSession, command: CommandRow, result: CommandResult
) -> Container | None:
    container = await session.get(Container, command.container_id)
    if container is None or command.device_key != container.device_key:
        # A command for an old copy (a retained copy's files or removal), or one the
        # container's move overtook: the container's record is not its to change.
        return None
    now = utcnow()
    container.updated_at = now
    if not result.ok:
        container.error = f"{command.action}: {result.error or result.error_code}"[:500]
        if command.action == Action.CREATE:
            # Nothing exists on the node: free the name, keep the story in the command.
            container.state, container.removed_at = FAILED, now
        return container
    container.error = None
    if command.action == Action.REMOVE:
        container.state, container.removed_at = REMOVED, now
    else:
        _observe(container, result.container)
    return container


async def command_expired(*, session: AsyncSession, command: CommandRow) -> Container | None:
    container = await session.get(Container, command.container_id)
    if container is None or container.removed_at is not None:
        return None
    container.error = f"{command.action}: not delivered in time"
    container.updated_at = utcnow()
    if command.action == Action.CREATE:
        container.state, container.removed_at = FAILED, container.updated_at
    return container


MISSING = "missing"


def _gone(container: Container) -> None:
    """The node no longer has the container. Expected after a remove or for a job that
    removes itself; otherwise it is drift, flagged for the tenant to see."""
    now = utcnow()
    if container.desired_state == REMOVED or container.spec.get("auto_remove"):
        container.state, container.removed_at = REMOVED, now
    else:
        container.state, container.error = (
            MISSING,
            "not found on the node (removed outside edgecloud?)",
        )
    container.updated_at = now


def is_current(container: Container, *, device_key: str, report: ContainerReport) -> bool:
    """Whether ``report`` speaks for the container: it comes from the node the container is
    placed on and is of its current placement (a report of no generation comes from an
    agent that predates them, trusted as before). An old copy left behind on a node, even
    the same node, is never taken for the container."""
    if container.device_key != device_key:
        return False
    return report.generation is None or report.generation == container.generation


def report_changes(container: Container, report: ContainerReport) -> bool:
    """Whether a node's report would change what the cloud knows of the container."""
    if report.state in (REMOVED, "destroyed"):
        return container.removed_at is None
    if container.image_id is None and report.image_id is not None:
        return True
    return (container.state, container.exit_code, container.docker_id) != (
        report.state,
        report.exit_code,
        report.docker_id,
    )


async def apply_report(
    *, session: AsyncSession, device_key: str, report: ContainerReport
) -> Container | None:
    """A node says a container changed; only that node's own containers are touched.
    Returns the container if anything changed."""
    if report.container_id is None:
        return None
    container = await session.get(Container, report.container_id)
    if (
        container is None
        or container.removed_at is not None
        or not is_current(container, device_key=device_key, report=report)
    ):
        return None
    if not report_changes(container, report):
        return None
    if report.state in (REMOVED, "destroyed"):
        _gone(container)
        return container
    _observe(container, report)
    container.updated_at = utcnow()
    return container


async def reconcile(
    *, session: AsyncSession, device_key: str, inventory: list[ContainerReport]
) -> tuple[list[Container], list[ContainerReport]]:
    """Compare the cloud's containers on a node with the node's own list.

    Returns the containers whose state changed, and the node's containers the cloud does
    not know (orphans: made by edgecloud, but not, or no longer, recorded here). A copy of
    another placement than the container's current one does not stand for it.
    """
    on_node = {r.container_id: r for r in inventory if r.container_id}
    rows = (
        await session.scalars(
            select(Container).where(
                Container.device_key == device_key, Container.removed_at.is_(None)
            )
        )
    ).all()
    changed = []
    for container in rows:
        report = on_node.pop(container.id, None)
        if report is not None and not is_current(container, device_key=device_key, report=report):
            on_node[container.id] = report
            report = None
        before = (container.state, container.exit_code, container.removed_at)
        if report is not None:
            _observe(container, report)
        elif container.state not in (PENDING, STORED):
            _gone(container)
        if (container.state, container.exit_code, container.removed_at) != before:
            container.updated_at = utcnow()
            changed.append(container)
    return changed, list(on_node.values())


def to_view(row: Container, *, command: str | None = None) -> ContainerView:
    return ContainerView(
        id=row.id,
        name=row.docker_name,
        device=row.device_key,
        image=row.image,
        state=row.state,
        desired_state=row.desired_state,
        owner=row.owner,
        created_at=row.created_at,
        updated_at=row.updated_at,
        exit_code=row.exit_code,
        error=row.error,
        limits=Limits.model_validate(row.spec.get("limits", {})),
        command=command,
        interfaces=[device["interface"] for device in row.spec.get("devices", [])],
        network=row.spec.get("network", "tenant"),
        ports=ports.of_spec(row.spec),
    )


def device_matches(device: dict[str, Any], *, location: str | None, arch: str | None) -> bool:
    if device.get("status") == "offline":
        return False
    if location is not None and str(device.get("location", "")).casefold() != location.casefold():
        return False
    return arch is None or device.get("arch") == arch


def load(device: dict[str, Any]) -> tuple[float, float]:
    """Least loaded first: CPU, then the share of memory in use."""
    metrics = device.get("metrics") or {}
    memory_total = device.get("memory_total") or 1
    return (
        float(metrics.get("cpu_percent") or 0),
        float(metrics.get("memory_used") or 0) / memory_total,
    )


async def relocate(
    *,
    session: AsyncSession,
    container_id: str,
    source: str,
    target: str,
    sensor_broker: str | None = None,
    restart: bool = False,
    stored: bool = False,
    ttl: timedelta = timedelta(hours=1),
) -> tuple[Container, CommandRow | None]:
    """A migration moved the container from ``source`` to ``target``: from now on the
    target's reports and commands are the container's, and its published ports are held
    there (:class:`.exceptions.PortTaken` when one is not free). ``sensor_broker``: where its
    subscriptions are read from now on (the source's broker, where its sensors publish).
    ``restart``: the source was lost, so the target creates it afresh from its spec (a
    cold restart; the create command is returned). ``stored``: ``target`` only keeps its
    package (level 1), until it moves on from there. Repeating it changes nothing."""
    row = await session.get(Container, container_id, with_for_update=True)
    if row is None or row.removed_at is not None:
        raise ContainerNotFound(container_id)
    if row.device_key == target:
        return row, None
    if row.device_key != source:
        raise MovedElsewhere(container_id, row.device_key)
    if row.spec.get("devices"):
        raise HoldsHardware(container_id)
    if not stored:
        # Its published ports go along, if they are free on the target (else nothing
        # moves); a keeper runs nothing, so they stay held where it was until it runs again.
        await ports.move(session, container=row, target=target)
    spec = dict(row.spec)
    if sensor_broker and spec.get("subscriptions") and not spec.get("sensor_broker"):
        spec["sensor_broker"] = sensor_broker
    # A new placement: the copy left on the source is an old one from now on.
    row.generation += 1
    spec["generation"] = row.generation
    row.spec, row.device_key, row.updated_at = spec, target, utcnow()
    session.add(
        PlacementRecord(
            container_id=row.id,
            generation=row.generation,
            device_key=target,
            placed_at=row.updated_at,
        )
    )
    if stored:
        # Commands for the node it left are moot; the keeper runs none.
        await commands_service.cancel_pending(session=session, container_id=row.id)
        row.state = STORED
    if not restart:
        return row, None
    # Anything still queued for the lost node is moot; the create brings the desired state.
    await commands_service.cancel_pending(session=session, container_id=row.id)
    row.state = PENDING
    command = commands_service.enqueue(
        session,
        tenant_id=row.tenant_id,
        container_id=row.id,
        device_key=target,
        docker_name=row.docker_name,
        action=Action.CREATE,
        ttl=ttl,
        spec=spec,
    )
    return row, command


async def memory_reserved(session: AsyncSession) -> dict[str, int]:
    """Bytes the memory limits of live containers hold, by node."""
    rows = await session.execute(
        select(Container.device_key, Container.spec).where(
            Container.removed_at.is_(None), Container.state != STORED
        )
    )
    held: dict[str, int] = {}
    for device_key, spec in rows:
        limits = Limits.model_validate(spec.get("limits") or {})
        held[device_key] = held.get(device_key, 0) + limits.memory
    return held


async def on_node(*, session: AsyncSession, device_key: str) -> list[Container]:
    query = select(Container).where(
        Container.device_key == device_key, Container.removed_at.is_(None)
    )
    return list((await session.scalars(query.order_by(Container.created_at))).all())
