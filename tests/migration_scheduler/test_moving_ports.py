"""Published ports travel with a migration: a peer that does not publish them or holds one
already is never chosen, a move asked to such a device is refused with the reason's code
and nothing recorded, and a lost node's container restarts where its ports are free. The
registry and the orchestrator are stood in for (the registry showing a tenant what it
shows tenants: no broker addresses); the records are on the real (SQLite) schema."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.devices import DeviceView
from edgecloud_contracts.migrations import MigrationReason
from edgecloud_migration_scheduler.moves.coordinator import Coordinator
from edgecloud_migration_scheduler.moves.exceptions import PortsRefused
from edgecloud_migration_scheduler.moves.models import Migration
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.internal_http import ServiceAnswer
from tests.migration_scheduler.test_hardware_bound import coordinating
from tests.migration_scheduler.test_node_loss import device

ALICE = Identity(user_id="u-a", username="alice", tenant_id="t1")
RANGE = {"pids_per_container": 512, "pids_total": 4096, "ports": [30000, 30099]}


def peer(key: str, policy: dict[str, Any] | None = RANGE) -> dict[str, Any]:
    return {**device(key, "online"), "peer_url": f"mqtt://{key}:1883", "policy": policy}


# n1 is the source; n2 is the nearest but holds port 30080 already; n3 publishes it and is
# free; n4 publishes no ports.
DEVICES = [
    {**peer("n1"), "neighbours": {"n2": 1.0, "n3": 20.0, "n4": 2.0}},
    peer("n2"),
    peer("n3"),
    peer("n4", policy={**RANGE, "ports": None}),
]
PORTS = [
    {"device": "n1", "host": 30080, "protocol": "tcp", "container": "c-web"},
    {"device": "n2", "host": 30080, "protocol": "tcp", "container": "c-someone-elses"},
]


class Registry:
    """Operators see every field; a tenant is shown no broker address (peer_url)."""

    async def request(
        self, method: str, path: str, *, identity: Identity, **_: Any
    ) -> ServiceAnswer:
        assert (method, path) == ("GET", "/v1/devices")
        items = [
            d if identity.is_operator else {**d, "peer_url": "", "neighbours": {}} for d in DEVICES
        ]
        return ServiceAnswer(200, json.dumps({"items": items, "next_cursor": None}).encode())


class Orchestrator:
    def __init__(self) -> None:
        self.posted: list[tuple[str, Any]] = []

    async def request(self, method: str, path: str, *, json: Any = None, **_: Any) -> ServiceAnswer:
        if method == "POST":
            self.posted.append((path, json))
            return self._answer(container())
        if path == "/v1/nodes/ports":
            return self._answer(PORTS)
        if path == "/v1/nodes/reserved":
            return self._answer([])
        assert path == "/v1/containers/c-web", path
        return self._answer(container())

    @staticmethod
    def _answer(body: Any) -> ServiceAnswer:
        return ServiceAnswer(200, json.dumps(body).encode())


def container() -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {"id": "c-web", "name": "alice-web", "device": "n1", "image": "busybox",
            "state": "running", "desired_state": "running", "owner": "alice",
            "created_at": now, "updated_at": now,
            "limits": {"memory": 64 << 20, "cpus": 0.5, "pids": 64}}  # fmt: skip


@pytest.fixture
async def scheduler(sessions) -> AsyncIterator[tuple[Coordinator, Orchestrator]]:
    orchestrator = Orchestrator()
    async with coordinating(sessions, Registry(), orchestrator) as coordinator:
        yield coordinator, orchestrator


async def recorded(sessions: async_sessionmaker[AsyncSession]) -> list[Migration]:
    async with sessions() as session:
        return list((await session.scalars(select(Migration))).all())


@pytest.mark.parametrize(
    ("target", "code", "status"),
    [("n2", "port_taken", 409), ("n4", "ports_not_allowed", 422)],
)
async def test_a_move_to_a_device_that_cannot_publish_its_ports_is_refused(
    sessions, scheduler, target, code, status
) -> None:
    coordinator, orchestrator = scheduler
    with pytest.raises(PortsRefused) as refused:
        await coordinator.start(
            caller=ALICE, container_id="c-web", device=target, reason=MigrationReason.MANUAL
        )
    assert (refused.value.code, refused.value.status) == (code, status)
    assert (refused.value.extra["port"], refused.value.extra["device"]) == (30080, target)
    assert await recorded(sessions) == []
    assert orchestrator.posted == []


async def test_the_peer_chosen_publishes_the_ports(sessions, scheduler) -> None:
    coordinator, _ = scheduler
    await coordinator.start(
        caller=ALICE, container_id="c-web", device=None, reason=MigrationReason.MANUAL
    )
    [migration] = await recorded(sessions)
    assert migration.target_device == "n3"
    excluded = {e["key"]: e["reason"] for e in migration.plan["containers"]["c-web"]["excluded"]}
    assert excluded == {"n1": "is_source", "n2": "port_taken", "n4": "ports_not_allowed"}
    # The source's broker address comes from the operator's view: tenants are not shown it.
    assert migration.plan["source_peer_url"] == "mqtt://n1:1883"


async def test_a_lost_nodes_container_restarts_where_its_ports_are_free(
    sessions, scheduler
) -> None:
    coordinator, orchestrator = scheduler
    lost = DeviceView.model_validate({**peer("n1"), "status": "offline"})
    assert await coordinator.cold_restart(container_id="c-web", tenant_id="t1", lost=lost)
    [(path, body)] = orchestrator.posted
    assert path == "/v1/containers/c-web/relocation"
    assert (body["target"], body["restart"]) == ("n3", True)
