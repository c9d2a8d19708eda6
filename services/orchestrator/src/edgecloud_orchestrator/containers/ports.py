"""Host ports containers publish on their nodes: one container per port, protocol and node,
whatever the tenants.

A container's ports are reserved in its create's transaction, as rows keyed by the port on
the node: of two creates racing for one port (one tenant's or two tenants', in one replica
or several) the database lets only one commit its row, and the other is refused with
``port_taken``, nothing of it stored. Rows are written in one order (by port), so two
creates each wanting the other's port wait for each other in turn, never in a circle.

A row holds while its container lives on that device. Once the container is removed (or
its create failed) the port is free: the next create that wants it reclaims the row, and
retention sweeps the others (:func:`prune`), so no path that ends a container has to
remember its ports. A migration moves the rows to the target in the transaction that moves
the container's record (:func:`move`): the target's ports are checked the same way.
"""

from collections.abc import Collection, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Select, Table, and_, delete, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from edgecloud_contracts.containers import PortMapping
from edgecloud_contracts.devices import HostPort
from edgecloud_contracts.devices import PublishedPort as PublishedPortView
from edgecloud_servicekit.db import insert_new, utcnow

from .exceptions import PortTaken
from .models import Container, PublishedPort


def of_spec(spec: Mapping[str, Any]) -> list[PortMapping]:
    """The ports a stored spec publishes."""
    return [PortMapping.model_validate(port) for port in spec.get("ports", [])]


async def reserve(
    session: AsyncSession, *, container_id: str, device_key: str, ports: Sequence[PortMapping]
) -> None:
    """Hold ``ports`` on ``device_key`` for the container, in the caller's transaction;
    :class:`PortTaken` when another live container holds one (the caller's transaction
    must then end: nothing it did is kept)."""
    if not ports:
        return
    wanted = sorted(ports, key=lambda port: (port.host, port.protocol))
    keys = [(port.host, port.protocol) for port in wanted]
    await session.execute(
        delete(PublishedPort)
        .where(PublishedPort.device_key == device_key, _one_of(keys), ~_held())
        .execution_options(synchronize_session=False)
    )
    now = utcnow()
    table = cast(Table, PublishedPort.__table__)
    written = await session.execute(
        insert_new(session, table, index_elements=["device_key", "host_port", "protocol"])
        .values(
            [
                {
                    "device_key": device_key,
                    "host_port": port.host,
                    "protocol": port.protocol,
                    "container_id": container_id,
                    "reserved_at": now,
                }
                for port in wanted
            ]
        )
        .returning(PublishedPort.host_port, PublishedPort.protocol)
    )
    held = {(row.host_port, row.protocol) for row in written}
    for port in wanted:
        if (port.host, port.protocol) not in held:
            raise PortTaken(device_key, (port.host, port.protocol))


async def move(session: AsyncSession, *, container: Container, target: str) -> None:
    """The container's ports from its node to ``target``, in the transaction that moves its
    record there; :class:`PortTaken` when one is held on the target."""
    ports = of_spec(container.spec)
    if not ports:
        return
    await session.execute(
        delete(PublishedPort)
        .where(PublishedPort.container_id == container.id)
        .execution_options(synchronize_session=False)
    )
    await reserve(session, container_id=container.id, device_key=target, ports=ports)


async def published(
    session: AsyncSession, *, devices: Collection[str] | None = None
) -> list[PublishedPortView]:
    """The ports live containers hold, on ``devices`` (on every device when None)."""
    query: Select[PublishedPort] = select(PublishedPort).where(_held())
    if devices is not None:
        query = query.where(PublishedPort.device_key.in_(devices))
    rows = await session.scalars(
        query.order_by(PublishedPort.device_key, PublishedPort.host_port, PublishedPort.protocol)
    )
    return [
        PublishedPortView(
            device=row.device_key,
            host=row.host_port,
            protocol="udp" if row.protocol == "udp" else "tcp",
            container=row.container_id,
        )
        for row in rows
    ]


async def taken_on(session: AsyncSession, *, devices: Collection[str]) -> dict[str, set[HostPort]]:
    """Each device's held (port, protocol) pairs."""
    taken: dict[str, set[HostPort]] = {key: set() for key in devices}
    for port in await published(session, devices=devices):
        taken[port.device].add((port.host, port.protocol))
    return taken


async def prune(*, session: AsyncSession) -> None:
    """Forget the rows of containers that no longer live on the row's device."""
    await session.execute(
        delete(PublishedPort).where(~_held()).execution_options(synchronize_session=False)
    )


def _held() -> ColumnElement[bool]:
    """Whether a row's container lives on the row's device."""
    return exists().where(
        Container.id == PublishedPort.container_id,
        Container.device_key == PublishedPort.device_key,
        Container.removed_at.is_(None),
    )


def _one_of(keys: Sequence[tuple[int, str]]) -> ColumnElement[bool]:
    return or_(
        *(
            and_(PublishedPort.host_port == host, PublishedPort.protocol == protocol)
            for host, protocol in keys
        )
    )
