"""What a node may ask of the scheduler, read as a compromised node would ask it: to move
only its own containers, at a bounded rate, and what it says of itself (round trips, free
memory) only as far as the cloud can check it. The registry and the orchestrator are
stood in for; the records are on the real (SQLite) schema."""

from typing import Any

import pytest
from sqlalchemy import func, select

from edgecloud_contracts import errors
from edgecloud_contracts.devices import DeviceView
from edgecloud_contracts.migrations import MigrationReason, NodeMigrationRequest
from edgecloud_migration_scheduler.moves.coordinator import RequestRefused, _candidate
from edgecloud_migration_scheduler.moves.models import Migration
from edgecloud_migration_scheduler.placement.planner import DEFAULT_POLICY, Demand, plan
from tests.migration_scheduler.test_hardware_bound import container, coordinating
from tests.migration_scheduler.test_node_loss import FakeService, device

CONTAINERS = [f"c-{n}" for n in range(30)]
LIMIT = 20


def fleet() -> tuple[FakeService, FakeService]:
    """n1 holds thirty containers, n3 (the attacker) none; no node can take anything, so
    every move asked for is planned and fails at once."""
    registry = FakeService(
        {
            "/v1/devices": {
                "items": [device("n1", "online"), device("n3", "online")],
                "next_cursor": None,
            },
            "/v1/devices/n1/grants": {"items": [{"tenant": "t1"}]},
            "/v1/devices/n3/grants": {"items": []},
        }
    )
    answers: dict[str, Any] = {
        "/v1/nodes/n1/containers": [{"id": c, "tenant": "t1"} for c in CONTAINERS],
        "/v1/nodes/n3/containers": [],
        "/v1/nodes/ports": [],
        "/v1/nodes/reserved": [],
    }
    answers.update({f"/v1/containers/{c}": container(c, interfaces=[]) for c in CONTAINERS})
    return registry, FakeService(answers)


async def recorded(sessions) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count(Migration.id))) or 0)


async def test_a_node_cannot_ask_to_move_another_nodes_container(sessions) -> None:
    async with coordinating(sessions, *fleet()) as scheduler:
        request = NodeMigrationRequest(reason=MigrationReason.DRAIN, containers=["c-1"])
        with pytest.raises(RequestRefused) as refused:
            await scheduler.node_request(request, device="n3")
    assert refused.value.uri == errors.NOT_AUTHORIZED
    assert "c-1" in str(refused.value)
    assert await recorded(sessions) == 0


async def test_a_node_asking_a_hundred_times_a_minute_is_held_to_its_rate(sessions) -> None:
    async with coordinating(sessions, *fleet()) as scheduler:
        outcomes: list[str] = []
        for n in range(100):
            request = NodeMigrationRequest(
                reason=MigrationReason.CPU, containers=[CONTAINERS[n % len(CONTAINERS)]]
            )
            try:
                await scheduler.node_request(request, device="n1")
                outcomes.append("planned")
            except RequestRefused as err:
                outcomes.append(err.uri)
    assert outcomes == ["planned"] * LIMIT + [errors.TOO_MANY_REQUESTS] * (100 - LIMIT)
    assert await recorded(sessions) == LIMIT
    # An operator's move is not the node's to spend.
    async with sessions() as session:
        reasons = set((await session.scalars(select(Migration.reason))).all())
    assert reasons == {MigrationReason.CPU.value}


async def test_a_drain_beyond_the_rate_moves_the_rest_when_asked_again(sessions) -> None:
    """An honest drain of thirty containers: twenty are planned, ten deferred (the node's
    monitor asks again a minute later); asking again at once is refused."""
    async with coordinating(sessions, *fleet()) as scheduler:
        request = NodeMigrationRequest(reason=MigrationReason.DRAIN)
        answer = await scheduler.node_request(request, device="n1")
        with pytest.raises(RequestRefused) as refused:
            await scheduler.node_request(request, device="n1")
    assert answer["deferred"] == CONTAINERS[LIMIT:]
    assert refused.value.uri == errors.TOO_MANY_REQUESTS
    assert await recorded(sessions) == LIMIT


def test_a_node_claiming_to_be_near_and_empty_does_not_draw_the_move() -> None:
    """n3 says it is 0.1 ms from the source and has all its memory free; the source measured
    it at 40 ms, and the cloud has given out most of its memory. n2 tells the truth."""

    def peer(key: str, neighbours: dict[str, float]) -> dict[str, Any]:
        found = device(key, "online", neighbours=neighbours)
        return {**found, "peer_url": f"mqtt://{key}:1883", "collaboration_level": 2}

    source = DeviceView.model_validate(peer("n1", {"n2": 10.0, "n3": 40.0}))
    honest = DeviceView.model_validate(peer("n2", {"n1": 10.0}))
    liar = peer("n3", {"n1": 0.1})
    liar["metrics"]["memory_used"] = 0
    liar_view = DeviceView.model_validate(liar)
    reserved = {"n3": (1 << 30) - (200 << 20)}
    candidates = [
        _candidate(d, tenant_id="t1", source=source, taken={}, reserved=reserved)
        for d in (honest, liar_view)
    ]
    by_key = {c.key: c for c in candidates}
    assert by_key["n3"].rtt_ms == {"n1": 40.0}  # the longer of the two directions
    assert by_key["n3"].memory_free == 200 << 20  # what the cloud has not given out
    demand = Demand(
        container_id="c-1", tenant_id="t1", source="n1", arch="x86_64",
        cpus=0.0, memory=128 << 20, disk=0,
    )  # fmt: skip
    chosen = plan([demand], candidates, DEFAULT_POLICY)
    assert [c.target for c in chosen.choices] == ["n2"]
