"""A container's hardware interfaces and sensor topics: checked against its node's
declarations (the registry's, as the caller may see them), then held in turn.

A container holds its interfaces while it is wanted running and not removed: a stopped
one lets another take an exclusive interface, and must take it back to start again (if it
is still declared for it as it was).
Claims of one interface take turns on its lock row, so that two containers asking at
the same moment never both get an exclusive one (on PostgreSQL the row lock orders
them; SQLite has one writer at a time).
"""

from dataclasses import dataclass, field

from sqlalchemy import Select, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_contracts.containers import CreateContainer
from edgecloud_contracts.interfaces import (
    DeviceMapping,
    InterfaceHolder,
    InterfaceKind,
    InterfaceView,
    topic_covers,
)
from edgecloud_servicekit.db import utcnow
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.internal_http import ServiceClient

from .exceptions import (
    InterfaceBusy,
    InterfaceNeedsDevice,
    InterfaceNotDeclared,
    TopicNotGranted,
)
from .models import Container, InterfaceClaim, InterfaceLock

RUNNING = "running"


@dataclass(frozen=True, slots=True)
class Resolved:
    devices: list[DeviceMapping] = field(default_factory=list)
    exclusive: dict[str, bool] = field(default_factory=dict)
    """Each interface's name: whether it is held alone."""


async def declared_for(
    *, registry: ServiceClient, caller: Identity, device_key: str
) -> dict[str, InterfaceView]:
    """The device's interfaces granted to the caller's tenant, by name."""
    answer = await registry.request("GET", f"/v1/devices/{device_key}/interfaces", identity=caller)
    return {
        view.name: view for view in (InterfaceView.model_validate(item) for item in answer.json())
    }


def uncovered(declared: dict[str, InterfaceView], subscriptions: list[str]) -> str | None:
    """The first of ``subscriptions`` no granted sensor stream covers, if any."""
    topics = [view.topic for view in declared.values() if view.kind is InterfaceKind.SENSOR]
    for wanted in subscriptions:
        if not any(topic is not None and topic_covers(topic, wanted) for topic in topics):
            return wanted
    return None


def _mapping(name: str, declared: dict[str, InterfaceView]) -> DeviceMapping:
    found = declared.get(name)
    if found is None or found.kind is InterfaceKind.SENSOR or found.path is None:
        raise InterfaceNotDeclared(name)
    return DeviceMapping(
        interface=name,
        host_path=found.path,
        container_path=found.container_path or found.path,
        read_only=found.read_only,
    )


async def resolve(
    *, registry: ServiceClient, caller: Identity, request: CreateContainer, device_key: str
) -> Resolved:
    """The device files to map and the topics to feed, all declared on the device for the
    caller's tenant; anything else is refused before anything is stored."""
    if not request.interfaces and not request.subscriptions:
        return Resolved()
    if request.interfaces and request.device is None:
        raise InterfaceNeedsDevice()
    declared = await declared_for(registry=registry, caller=caller, device_key=device_key)
    resolved = Resolved()
    for name in dict.fromkeys(request.interfaces):
        resolved.devices.append(_mapping(name, declared))
        resolved.exclusive[name] = not declared[name].shareable
    topic = uncovered(declared, request.subscriptions)
    if topic is not None:
        raise TopicNotGranted(topic)
    return resolved


async def still_declared(
    *, registry: ServiceClient, caller: Identity, container: Container
) -> None:
    """Before a container starts again: each device it holds is still declared for its
    tenant as it was at create (an interface withdrawn or changed since is refused)."""
    held = [DeviceMapping.model_validate(item) for item in container.spec.get("devices", [])]
    if not held:
        return
    declared = await declared_for(registry=registry, caller=caller, device_key=container.device_key)
    for mapping in held:
        if _mapping(mapping.interface, declared) != mapping:
            raise InterfaceNotDeclared(mapping.interface)


async def hold(
    session: AsyncSession, *, container_id: str, device_key: str, exclusive: dict[str, bool]
) -> None:
    """Claim the interfaces for a new container (in the caller's transaction)."""
    for name, alone in sorted(exclusive.items()):
        await _take_turn(session, device_key, name)
        await _check_free(session, device_key, name, container_id=container_id, alone=alone)
        session.add(
            InterfaceClaim(
                container_id=container_id,
                interface=name,
                device_key=device_key,
                exclusive=alone,
                claimed_at=utcnow(),
            )
        )
    await session.flush()


async def hold_again(session: AsyncSession, container: Container) -> None:
    """A container about to start again takes its interfaces back, if they are free."""
    if not container.spec.get("devices"):
        return  # holds none: nothing to ask the database
    claims = await session.scalars(
        select(InterfaceClaim)
        .where(InterfaceClaim.container_id == container.id)
        .order_by(InterfaceClaim.interface)
    )
    for claim in claims.all():
        await _take_turn(session, claim.device_key, claim.interface)
        await _check_free(
            session,
            claim.device_key,
            claim.interface,
            container_id=container.id,
            alone=claim.exclusive,
        )


async def holders(
    session: AsyncSession, *, caller: Identity, device_key: str
) -> dict[str, list[InterfaceHolder]]:
    """Who holds each interface of the node now; another tenant's containers unnamed."""
    rows = await session.execute(
        _live_claims()
        .add_columns(Container)
        .where(InterfaceClaim.device_key == device_key)
        .order_by(InterfaceClaim.interface, InterfaceClaim.claimed_at)
    )
    found: dict[str, list[InterfaceHolder]] = {}
    for claim, container in rows.tuples().all():
        own = caller.is_operator or container.tenant_id == caller.tenant_id
        found.setdefault(claim.interface, []).append(
            InterfaceHolder(
                container=container.id if own else None,
                name=container.docker_name if own else None,
                tenant=container.tenant_id if own else None,
                since=claim.claimed_at.isoformat(),
            )
        )
    return found


def _live_claims() -> Select[InterfaceClaim]:
    return (
        select(InterfaceClaim)
        .join(Container, Container.id == InterfaceClaim.container_id)
        .where(Container.removed_at.is_(None), Container.desired_state == RUNNING)
    )


async def _take_turn(session: AsyncSession, device_key: str, name: str) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    await session.execute(
        insert(InterfaceLock)
        .values(device_key=device_key, interface=name, taken_at=now)
        .on_conflict_do_nothing()
    )
    # Updating the row makes the next claimer of this interface wait for our commit.
    await session.execute(
        update(InterfaceLock)
        .where(InterfaceLock.device_key == device_key, InterfaceLock.interface == name)
        .values(taken_at=now)
    )


async def _check_free(
    session: AsyncSession, device_key: str, name: str, *, container_id: str, alone: bool
) -> None:
    others = (
        await session.scalars(
            _live_claims().where(
                InterfaceClaim.device_key == device_key,
                InterfaceClaim.interface == name,
                InterfaceClaim.container_id != container_id,
            )
        )
    ).all()
    if others and (alone or any(other.exclusive for other in others)):
        raise InterfaceBusy(name)
