"""Host ports on a node are held by one live container at a time, whatever the tenants: a
race for a port has exactly one winner on either database, a port comes free when its
container goes, moves with a migrated container, and a placement picks only a device whose
range holds the ports and where they are free. In process, on the real schemas."""

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.containers import CreateContainer
from edgecloud_orchestrator.containers import placement, ports, service
from edgecloud_orchestrator.containers.exceptions import NoMatchingDevice, PortTaken
from edgecloud_orchestrator.containers.models import Container, PublishedPort
from edgecloud_servicekit.db import transaction, utcnow
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.internal_http import ServiceAnswer

from .test_node_fit import create, node, tenant

pytestmark = pytest.mark.usefixtures("granting_registry")
WEB = {"host": 30080, "container": 80}


async def held(sessions: async_sessionmaker[AsyncSession], device: str) -> list[tuple[int, str]]:
    async with sessions() as session:
        taken = await ports.taken_on(session, devices=[device])
    return sorted(taken[device])


async def remove(sessions: async_sessionmaker[AsyncSession], container: Container) -> None:
    """As the node's answer to a remove does: the container is gone."""
    async with transaction(sessions) as session:
        row = await session.get(Container, container.id)
        assert row is not None
        row.removed_at = utcnow()


async def test_tenants_racing_for_a_port_have_one_winner(backend_sessions) -> None:
    sessions, device = backend_sessions, node()
    racers = [tenant() for _ in range(8)]
    outcomes = await asyncio.gather(
        *(create(sessions, racer, device, ports=[WEB]) for racer in racers),
        return_exceptions=True,
    )
    won = [o for o in outcomes if isinstance(o, Container)]
    lost = [o for o in outcomes if not isinstance(o, Container)]
    assert len(won) == 1, outcomes
    assert all(isinstance(o, PortTaken) for o in lost), lost
    assert {(o.status, o.code, o.extra["port"]) for o in lost if isinstance(o, PortTaken)} == {
        (409, "port_taken", 30080)
    }
    # The losers left nothing behind: one container, one port row.
    async with sessions() as session:
        containers = await session.scalar(
            select(func.count()).select_from(Container).where(Container.device_key == device["key"])
        )
    assert containers == 1
    assert await held(sessions, device["key"]) == [(30080, "tcp")]


async def test_crossed_port_lists_wait_in_turn_never_in_a_circle(pg_sessions) -> None:
    """Two creates want the same ports, listed the other way round, while a third
    transaction holds one in the middle: each takes the ports in one order, so the second
    waits behind the first instead of each holding what the other needs (PostgreSQL would
    then end one with a deadlock error, not a port_taken)."""
    sessions, device = pg_sessions, node()
    wanted = [{"host": 30000 + number, "container": 80} for number in range(1, 11)]
    async with sessions() as blocker, blocker.begin():
        blocker.add(
            PublishedPort(
                device_key=device["key"],
                host_port=30005,
                protocol="tcp",
                container_id="someone",
                reserved_at=utcnow(),
            )
        )
        await blocker.flush()
        first = asyncio.create_task(create(sessions, tenant(), device, ports=wanted))
        await asyncio.sleep(0.5)  # it holds 30001-30004 and waits for 30005
        second = asyncio.create_task(create(sessions, tenant(), device, ports=wanted[::-1]))
        await asyncio.sleep(0.5)
        await blocker.rollback()
    outcomes = await asyncio.gather(first, second, return_exceptions=True)
    assert [type(o).__name__ for o in outcomes] == ["Container", "PortTaken"], outcomes
    assert len(await held(sessions, device["key"])) == 10


async def test_a_port_is_one_containers_per_protocol_and_node(sessions) -> None:
    device, elsewhere = node(), node()
    await create(sessions, tenant(), device, ports=[WEB])
    with pytest.raises(PortTaken):  # the same tenant is refused as well
        await create(sessions, tenant(), device, ports=[{**WEB, "container": 8080}])
    await create(sessions, tenant(), device, ports=[{**WEB, "protocol": "udp"}])
    await create(sessions, tenant(), elsewhere, ports=[WEB])
    assert await held(sessions, device["key"]) == [(30080, "tcp"), (30080, "udp")]


async def test_a_removed_container_frees_its_ports(sessions) -> None:
    device = node()
    first = await create(sessions, tenant(), device, ports=[WEB])
    await remove(sessions, first)
    assert await held(sessions, device["key"]) == []
    second = await create(sessions, tenant(), device, ports=[WEB])
    async with sessions() as session:
        rows = (
            await session.scalars(
                select(PublishedPort).where(PublishedPort.device_key == device["key"])
            )
        ).all()
    assert [row.container_id for row in rows] == [second.id]  # the old row was reclaimed

    # Retention forgets the rows of containers gone (their ports were free already).
    gone = await create(sessions, tenant(), node(), ports=[WEB])
    await remove(sessions, gone)
    async with transaction(sessions) as session:
        await ports.prune(session=session)
    async with sessions() as session:
        left = await session.scalars(
            select(PublishedPort.container_id).where(PublishedPort.container_id == gone.id)
        )
        assert left.all() == []


async def relocate(sessions: async_sessionmaker[AsyncSession], container: Container, target: str):  # type: ignore[no-untyped-def]
    async with transaction(sessions) as session:
        return await service.relocate(
            session=session,
            container_id=container.id,
            source=container.device_key,
            target=target,
            restart=True,
            ttl=timedelta(hours=1),
        )


async def test_ports_move_with_the_container(backend_sessions) -> None:
    sessions, source, target, busy = backend_sessions, node(), node(), node()
    ours = await create(sessions, tenant(), source, ports=[WEB])
    await create(sessions, tenant(), busy, ports=[WEB])

    # Where the port is held, nothing moves: not the record, not its ports.
    with pytest.raises(PortTaken):
        await relocate(sessions, ours, busy["key"])
    async with sessions() as session:
        still = await session.get(Container, ours.id)
        assert still is not None
        assert still.device_key == source["key"]
    assert await held(sessions, source["key"]) == [(30080, "tcp")]

    moved, command = await relocate(sessions, ours, target["key"])
    assert moved.device_key == target["key"]
    assert command is not None
    assert command.payload["spec"]["ports"] == [{**WEB, "protocol": "tcp"}]  # it goes along
    assert await held(sessions, source["key"]) == []
    assert await held(sessions, target["key"]) == [(30080, "tcp")]
    # Free on the source now: another container publishes it there.
    await create(sessions, tenant(), source, ports=[WEB])


async def test_the_scheduler_is_shown_every_live_port(sessions) -> None:
    device = node()
    live = await create(sessions, tenant(), device, ports=[WEB])
    gone = await create(sessions, tenant(), device, ports=[{"host": 30081, "container": 80}])
    await remove(sessions, gone)
    async with sessions() as session:
        found = await ports.published(session)
    mine = [p for p in found if p.device == device["key"]]
    assert [(p.host, p.protocol, p.container) for p in mine] == [(30080, "tcp", live.id)]


class Registry:
    """The registry's device list, as it shows it to the caller."""

    def __init__(self, devices: list[dict[str, Any]]) -> None:
        self.devices = devices

    async def request(self, method: str, path: str, **_: Any) -> ServiceAnswer:
        assert (method, path) == ("GET", "/v1/devices")
        page = {"items": self.devices, "next_cursor": None}
        return ServiceAnswer(200, json.dumps(page).encode())


def placed(key: str, cpu: float, **fields: Any) -> dict[str, Any]:
    return {
        **node(**fields),
        "key": key,
        "status": "online",
        "location": "lab",
        "arch": "aarch64",
        "metrics": {"cpu_percent": cpu, "memory_used": 0, "disk_free": 0},
    }


async def test_a_placement_picks_a_device_where_the_ports_fit(sessions) -> None:
    caller = tenant()
    # By load the idle one would win, but it has no range; the next has the port taken.
    idle = placed("p_idle", 1, policy={**node()["policy"], "ports": None})
    taken = placed("p_taken", 2)
    free = placed("p_free", 50)
    await create(sessions, tenant(), taken, ports=[WEB])
    request = CreateContainer.model_validate(
        {"placement": {"location": "lab"}, "name": "web", "image": "busybox", "ports": [WEB]}
    )

    async def choose(devices: list[dict[str, Any]]) -> dict[str, Any]:
        return await placement.choose_device(
            registry=Registry(devices),  # type: ignore[arg-type]
            sessions=sessions,
            caller=caller,
            request=request,
            image_platforms=None,
        )

    assert (await choose([idle, taken, free]))["key"] == "p_free"
    with pytest.raises(NoMatchingDevice) as none:
        await choose([idle, taken])
    assert "ports free" in none.value.detail
    # Without ports the lightest one is taken, as before.
    plain = request.model_copy(update={"ports": []})
    chosen = await placement.choose_device(
        registry=Registry([idle, taken, free]),  # type: ignore[arg-type]
        sessions=sessions,
        caller=Identity(user_id="u", username="u", tenant_id="t"),
        request=plain,
        image_platforms=None,
    )
    assert chosen["key"] == "p_idle"
