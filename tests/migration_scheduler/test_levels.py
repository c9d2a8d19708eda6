"""The planner chooses among the collaboration levels (reference design 5.1): 2 when a node
near the source can run the container, then 0 (a peer near the source reaches a capable
node the source has never measured, and relays), then 1 (a peer keeps the package), and a
stored package is handed on when a capable node appears. The registry, the orchestrator
and the router session are stood in for; the records are on the real (SQLite) schema, and
the nodes' side of each level runs on Docker in tests/agent and on the testbed."""

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts import uris
from edgecloud_contracts.migrations import MigrationReason, MigrationState
from edgecloud_migration_scheduler.moves import service
from edgecloud_migration_scheduler.moves.coordinator import Coordinator
from edgecloud_migration_scheduler.moves.exceptions import NoSuitablePeer
from edgecloud_migration_scheduler.moves.models import Migration
from edgecloud_servicekit.problems import RemoteProblem
from tests.migration_scheduler.test_hardware_bound import ALICE, container, coordinating
from tests.migration_scheduler.test_node_loss import FakeService, device

SPEC = {
    "image": "busybox",
    "container_id": "c-1",
    "docker_name": "alice-web",
    "tenant_id": "t1",
    "owner": "alice",
}


def node(key: str, *, level: int, neighbours: dict[str, float], free: bool = True) -> dict:
    found = device(key, "online", neighbours=neighbours)
    if not free:  # all its memory taken
        found["metrics"]["memory_used"] = found["memory_total"]
    return {**found, "peer_url": f"mqtt://{key}:1883", "collaboration_level": level}


class FakeLink:
    """The router session: each device's procedures answer as the agents would."""

    connected = True

    def __init__(self, reached: dict[str, float] | None = None, *, stored: bool = False) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.reached = reached or {}
        self.stored = stored
        self.outcome: dict | None = None
        """What the source answers ``migration.start``; None: success."""

    async def call(self, uri: str, payload: dict, *, timeout: float) -> Any:
        self.calls.append((uri, payload))
        operation = uri.rsplit(".", 2)[-2] + "." + uri.rsplit(".", 1)[-1]
        if operation == uris.MIGRATION_FIND:
            return {"reached": self.reached}
        if operation == uris.MIGRATION_RELAY:
            return {"source_login": None, "target_login": None}
        if operation == uris.MIGRATION_EXPECT:
            return {"ok": True, "login": None}
        if operation == uris.MIGRATION_START:
            if self.outcome is not None:
                return self.outcome
            return {"ok": True, "steps": [], "stored": payload["level"] == 1}
        return {}

    async def publish(self, *_: Any, **__: Any) -> None:
        return None

    def asked(self, operation: str) -> list[tuple[str, dict]]:
        return [(uri, body) for uri, body in self.calls if uri.endswith(f".{operation}")]


def fleet(nodes: list[dict]) -> tuple[FakeService, FakeService]:
    keys = [n["key"] for n in nodes]
    registry = FakeService(
        {"/v1/devices": {"items": nodes, "next_cursor": None}}
        | {f"/v1/devices/{k}/grants": {"items": [{"tenant": "t1"}]} for k in keys}
    )
    orchestrator = FakeService(
        {
            "/v1/containers/c-1": container("c-1", interfaces=[]),
            "/v1/containers/c-1/record": {"spec": SPEC, "image_id": None},
            "/v1/nodes/ports": [],
            "/v1/nodes/reserved": [],
        }
    )
    return registry, orchestrator


async def moved_by(scheduler: Coordinator, link: FakeLink) -> None:
    scheduler.link = link  # type: ignore[assignment]
    await scheduler.start(
        caller=ALICE, container_id="c-1", device=None, reason=MigrationReason.MANUAL
    )
    await asyncio.gather(*scheduler._running)


async def record(sessions: async_sessionmaker[AsyncSession]) -> Migration:
    async with sessions() as session:
        rows = list(await service.stored(session=session))
        if rows:
            return rows[0]
        return (await session.scalars(select(Migration))).one()


async def test_a_node_near_that_can_run_it_is_level_2(sessions) -> None:
    nodes = [
        node("n1", level=2, neighbours={"n2": 5.0, "n3": 6.0}),
        node("n2", level=1, neighbours={"n1": 5.0}),
        node("n3", level=2, neighbours={"n1": 6.0}),
    ]
    link = FakeLink()
    async with coordinating(sessions, *fleet(nodes)) as scheduler:
        await moved_by(scheduler, link)
    row = await record(sessions)
    assert (row.level, row.target_device, row.keeper, row.via) == (2, "n3", None, None)
    assert row.state == MigrationState.COMPLETED.value, (row.error_code, row.error)
    assert link.asked(uris.MIGRATION_FIND) == []


async def test_a_peer_reaching_a_node_the_source_cannot_relays_at_level_0(sessions) -> None:
    """n3 could run it but n1 never measured it; n2 (messaging only) reaches it."""
    nodes = [
        node("n1", level=2, neighbours={"n2": 5.0}),
        node("n2", level=0, neighbours={"n1": 5.0, "n3": 7.0}),
        node("n3", level=2, neighbours={"n2": 7.0}),
    ]
    link = FakeLink(reached={"n3": 7.0})
    async with coordinating(sessions, *fleet(nodes)) as scheduler:
        await moved_by(scheduler, link)
    row = await record(sessions)
    assert (row.level, row.target_device, row.via) == (0, "n3", "n2")
    assert row.state == MigrationState.COMPLETED.value, (row.error_code, row.error)
    [(found_on, asked)] = link.asked(uris.MIGRATION_FIND)
    assert found_on == uris.device_procedure("n2", uris.MIGRATION_FIND)
    assert asked["candidates"] == {"n3": "mqtt://n3:1883"}
    [(_, expected)] = link.asked(uris.MIGRATION_EXPECT)
    assert expected["broker_url"] == "mqtt://n2:1883"  # through the relay's broker
    [(_, order)] = link.asked(uris.MIGRATION_START)
    assert order["target"] == "n3"
    assert order["target_url"] == "mqtt://n2:1883"
    assert [uri for uri, _ in link.asked(uris.MIGRATION_RELEASE)] == [
        uris.device_procedure("n2", uris.MIGRATION_RELEASE)
    ]


async def test_too_far_through_the_peer_is_not_level_0(sessions) -> None:
    nodes = [
        node("n1", level=2, neighbours={"n2": 60.0}),
        node("n2", level=0, neighbours={"n1": 60.0, "n3": 60.0}),
        node("n3", level=2, neighbours={"n2": 60.0}),
    ]
    link = FakeLink(reached={"n3": 60.0})  # 120 ms in all, over the 100 ms allowed
    async with coordinating(sessions, *fleet(nodes)) as scheduler:
        with pytest.raises(NoSuitablePeer):
            await moved_by(scheduler, link)
    assert len(link.asked(uris.MIGRATION_FIND)) == 1  # asked, but too far that way
    assert link.asked(uris.MIGRATION_EXPECT) == []


async def test_nobody_able_to_run_it_leaves_it_with_a_keeper_then_hands_it_on(sessions) -> None:
    """n2 keeps it (level 1); once n3 has room, it is handed on from n2."""
    nodes = [
        node("n1", level=2, neighbours={"n2": 5.0}),
        node("n2", level=1, neighbours={"n1": 5.0, "n3": 4.0}),
        node("n3", level=2, neighbours={"n2": 4.0}, free=False),
    ]
    link = FakeLink()
    registry, orchestrator = fleet(nodes)
    async with coordinating(sessions, registry, orchestrator) as scheduler:
        await moved_by(scheduler, link)
        row = await record(sessions)
        assert (row.level, row.keeper, row.target_device) == (1, "n2", "n2")
        assert row.state == MigrationState.STORED.value
        [(_, expected)] = link.asked(uris.MIGRATION_EXPECT)
        assert (expected["level"], expected["source"]) == (1, "n1")

        # Nobody can run it yet: it stays where it is.
        stored = {**container("c-1", interfaces=[]), "device": "n2", "state": "stored"}
        orchestrator.answers["/v1/containers/c-1"] = stored
        assert await scheduler.hand_on_stored() == []
        # n3 has room now.
        registry.answers["/v1/devices"]["items"][2] = node("n3", level=2, neighbours={"n2": 4.0})
        assert await scheduler.hand_on_stored() == [row.id]
        await asyncio.gather(*scheduler._running)
    handed = await record(sessions)
    assert (handed.level, handed.keeper, handed.target_device) == (1, "n2", "n3")
    assert handed.state == MigrationState.COMPLETED.value
    _, (_, second) = link.asked(uris.MIGRATION_EXPECT)
    assert (second["level"], second["source"]) == (2, "n2")
    _, (started_on, _) = link.asked(uris.MIGRATION_START)
    assert started_on == uris.device_procedure("n2", uris.MIGRATION_START)


class RemovedContainer(FakeService):
    """The orchestrator once the tenant has removed the stored container."""

    async def request(self, method: str, path: str, **extra: Any) -> Any:
        if path == "/v1/containers/c-1":
            raise RemoteProblem(404, {"code": "container_not_found", "detail": "no c-1"})
        return await super().request(method, path, **extra)


async def test_a_stored_container_removed_meanwhile_ends_its_migration(sessions) -> None:
    nodes = [
        node("n1", level=2, neighbours={"n2": 5.0}),
        node("n2", level=1, neighbours={"n1": 5.0}),
    ]
    registry, orchestrator = fleet(nodes)
    async with coordinating(sessions, registry, orchestrator) as scheduler:
        await moved_by(scheduler, FakeLink())
        assert (await record(sessions)).state == MigrationState.STORED.value
        scheduler._orchestrator = RemovedContainer(orchestrator.answers)
        assert await scheduler.hand_on_stored() == []
    ended = await record(sessions)
    assert (ended.state, ended.error_code) == (MigrationState.FAILED.value, "container_removed")


async def test_a_package_that_can_never_run_ends_its_migration(sessions) -> None:
    """The keeper holds no image for it (a compromised source sent none): failed, not
    tried again every 30 s for ever; any other failure keeps it stored."""
    nodes = [
        node("n1", level=2, neighbours={"n2": 5.0}),
        node("n2", level=1, neighbours={"n1": 5.0, "n3": 4.0}),
        node("n3", level=2, neighbours={"n2": 4.0}),
    ]
    registry, orchestrator = fleet(nodes)
    async with coordinating(sessions, registry, orchestrator) as scheduler:
        scheduler._policy = replace(scheduler._policy, min_level=3)  # nobody runs it at first
        await moved_by(scheduler, FakeLink())
        assert (await record(sessions)).state == MigrationState.STORED.value
        scheduler._policy = replace(scheduler._policy, min_level=2)
        stored = {**container("c-1", interfaces=[]), "device": "n2", "state": "stored"}
        orchestrator.answers["/v1/containers/c-1"] = stored
        for code, state in (
            ("peer_timeout", MigrationState.STORED),
            ("no_image", MigrationState.FAILED),
        ):
            failing = FakeLink()
            failing.outcome = {"ok": False, "steps": [], "error_code": code}
            scheduler.link = failing  # type: ignore[assignment]
            scheduler._hand_on_after.clear()
            assert len(await scheduler.hand_on_stored()) == 1
            await asyncio.gather(*scheduler._running)
            assert (await record(sessions)).state == state.value
