"""A container holding its node's hardware interfaces never moves: a manual move is refused,
a node asking to be emptied keeps it, and a lost node's copy waits for its node. The
registry and the orchestrator are stood in for; the records are on the real (SQLite)
schema."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.devices import DeviceView
from edgecloud_contracts.migrations import MigrationReason, NodeMigrationRequest
from edgecloud_migration_scheduler.moves.coordinator import Coordinator
from edgecloud_migration_scheduler.moves.exceptions import HoldsHardware
from edgecloud_migration_scheduler.moves.models import Migration
from edgecloud_migration_scheduler.placement.planner import DEFAULT_POLICY
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.internal_http import ServiceAnswer
from tests.migration_scheduler.test_node_loss import FakeService, device

ALICE = Identity(user_id="u-a", username="alice", tenant_id="t1")


class RecordingService(FakeService):
    def __init__(self, answers: dict[str, Any]) -> None:
        super().__init__(answers)
        self.asked: list[tuple[str, str]] = []

    async def request(self, method: str, path: str, **extra: Any) -> ServiceAnswer:
        self.asked.append((method, path))
        return await super().request(method, path, **extra)


def container(container_id: str, *, interfaces: list[str]) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {"id": container_id, "name": f"alice-{container_id}", "device": "n1",
            "image": "busybox", "state": "running", "desired_state": "running",
            "owner": "alice", "created_at": now, "updated_at": now,
            "limits": {"memory": 64 << 20, "cpus": 0.5, "pids": 64},
            "interfaces": interfaces}  # fmt: skip


@pytest.fixture
async def coordinator(sessions) -> AsyncIterator[tuple[Coordinator, RecordingService]]:
    """n1 holds c-hw (with a serial port) and c-plain; no other node can take anything."""
    registry = FakeService(
        {
            "/v1/devices": {"items": [device("n1", "online")], "next_cursor": None},
            "/v1/devices/n1/grants": {"items": [{"tenant": "t1"}]},
        }
    )
    orchestrator = RecordingService(
        {
            "/v1/nodes/n1/containers": [
                {"id": "c-hw", "tenant": "t1"},
                {"id": "c-plain", "tenant": "t1"},
            ],
            "/v1/containers/c-hw": container("c-hw", interfaces=["serial0"]),
            "/v1/containers/c-plain": container("c-plain", interfaces=[]),
            "/v1/nodes/ports": [],
            "/v1/nodes/reserved": [],
        }
    )
    async with coordinating(sessions, registry, orchestrator) as found:
        yield found, orchestrator


@asynccontextmanager
async def coordinating(
    sessions: async_sessionmaker[AsyncSession], registry: Any, orchestrator: Any
) -> AsyncIterator[Coordinator]:
    """A coordinator over stand-ins for the registry and the orchestrator."""
    found = Coordinator(
        sessions=sessions,
        registry=registry,
        orchestrator=orchestrator,
        policy=DEFAULT_POLICY,
        expect_timeout_s=1,
        move_timeout_s=1,
    )
    try:
        yield found
    finally:
        await found.close()


async def moved(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return list((await session.scalars(select(Migration.container_id))).all())


async def test_a_manual_move_is_refused(sessions, coordinator) -> None:
    scheduler, _ = coordinator
    with pytest.raises(HoldsHardware) as refused:
        await scheduler.start(
            caller=ALICE, container_id="c-hw", device=None, reason=MigrationReason.MANUAL
        )
    assert refused.value.code == "holds_hardware"
    assert await moved(sessions) == []


async def test_a_node_asking_to_be_emptied_keeps_it(sessions, coordinator) -> None:
    scheduler, _ = coordinator
    request = NodeMigrationRequest(reason=MigrationReason.CPU, detail="busy")
    answer = await scheduler.node_request(request, device="n1")
    # The other one is planned (and, with no peer here, recorded as unplaced).
    assert answer["unplaced"] == ["c-plain"]
    assert await moved(sessions) == ["c-plain"]


async def test_a_lost_node_keeps_it_until_it_is_back(sessions, coordinator) -> None:
    scheduler, orchestrator = coordinator
    lost = DeviceView.model_validate(device("n1", "offline"))
    assert await scheduler.cold_restart(container_id="c-hw", tenant_id="t1", lost=lost)
    assert await moved(sessions) == []
    assert ("POST", "/v1/containers/c-hw/relocation") not in orchestrator.asked
