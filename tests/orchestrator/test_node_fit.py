"""A create that does not fit its node is refused before anything is stored or sent:
limits beyond the node or its policy, published ports it does not allow, and a tenant
taking more than its share of the node's memory, CPUs or PIDs. In process, on the
orchestrator's real (SQLite) schema, through the transaction every create goes through."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.containers import CreateContainer
from edgecloud_orchestrator.commands.models import CommandRow
from edgecloud_orchestrator.containers import creation, interfaces
from edgecloud_orchestrator.containers.fitting import NodeShares
from edgecloud_orchestrator.containers.models import Container
from edgecloud_orchestrator.settings import OrchestratorSettings
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.problems import Problem
from tests.orchestrator.conftest import GRANTING_REGISTRY

# A create asks the registry whether the device is still granted (a stand-in that grants all).
pytestmark = pytest.mark.usefixtures("granting_registry")

GIB = 1 << 30
MIB = 1 << 20
HALF = NodeShares(memory=0.5, cpus=0.5, pids=0.5)
POLICY = {"pids_per_container": 512, "pids_total": 1000, "ports": [30000, 30099]}


def tenant() -> Identity:
    suffix = uuid.uuid4().hex[:8]
    return Identity(user_id=f"u-{suffix}", username=f"user{suffix}", tenant_id=f"t-{suffix}")


def node(policy: dict[str, Any] | None = POLICY, **size: Any) -> dict[str, Any]:
    """A device as the registry shows it: 4 CPUs, 4 GiB of memory, 32 GiB of disk."""
    key = f"node_{uuid.uuid4().hex[:8]}"
    return {
        "key": key,
        "cpu_count": 4,
        "memory_total": 4 * GIB,
        "disk_total": 32 * GIB,
        "policy": policy,
        **size,
    }


async def create(
    sessions: async_sessionmaker[AsyncSession],
    caller: Identity,
    device: dict[str, Any],
    shares: NodeShares = HALF,
    **body: Any,
) -> Container:
    request = CreateContainer.model_validate(
        {"device": device["key"], "name": f"c{uuid.uuid4().hex[:8]}", "image": "busybox", **body}
    )
    container, _ = await creation.record(
        sessions=sessions,
        caller=caller,
        request=request,
        device=device,
        shares=shares,
        ttl=timedelta(hours=1),
        holds=interfaces.Resolved(),
        registry=GRANTING_REGISTRY[-1],
    )
    return container


async def refused(sessions, caller, device, **body: Any) -> Problem:  # type: ignore[no-untyped-def]
    """The problem a create is refused with; nothing of it stored."""
    before = await stored(sessions)
    with pytest.raises(Problem) as refusal:
        await create(sessions, caller, device, **body)
    assert await stored(sessions) == before
    return refusal.value


async def stored(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    async with sessions() as session:
        containers = await session.scalar(select(func.count()).select_from(Container))
        commands = await session.scalar(select(func.count()).select_from(CommandRow))
    return containers or 0, commands or 0


def test_each_tenant_gets_half_a_node_by_default_and_the_shares_are_checked() -> None:
    """Half the memory and PIDs; CPU time is held to its share by the node itself (the
    tenant's cgroup: tests/testbed/test_hostile_tenant.py), not by refusing creates."""
    settings = OrchestratorSettings(env="development")
    assert (
        settings.tenant_node_memory_share,
        settings.tenant_node_cpu_share,
        settings.tenant_node_pids_share,
    ) == (0.5, 1.0, 0.5)
    for share in (0, 1.5):
        with pytest.raises(ValidationError):
            OrchestratorSettings(env="development", tenant_node_cpu_share=share)


@pytest.mark.parametrize(
    ("limits", "limit", "available"),
    [
        ({"pids": 513}, "pids", 512),  # the node's pids_per_container
        ({"disk": 33 * GIB}, "disk", 32 * GIB),
        ({"memory": 5 * GIB}, "memory", 4 * GIB),
        ({"cpus": 4.5}, "cpus", 4),
    ],
)
async def test_limits_beyond_the_node_are_refused(sessions, limits, limit, available) -> None:
    problem = await refused(sessions, tenant(), node(), limits=limits)
    assert (problem.status, problem.code) == (422, "exceeds_device")
    assert (problem.extra["limit"], problem.extra["available"]) == (limit, available)


async def test_an_agent_without_a_policy_gets_the_clouds_pid_limit(sessions) -> None:
    older = node(policy=None)
    problem = await refused(sessions, tenant(), older, limits={"pids": 1025})
    assert (problem.code, problem.extra["limit"]) == ("exceeds_device", "pids")
    await create(sessions, tenant(), older, limits={"pids": 1024})


@pytest.mark.parametrize(
    ("resource", "limits", "reserved", "allowed"),
    [
        ("memory", {"memory": GIB + 512 * MIB}, GIB + 512 * MIB, 2 * GIB),
        ("cpus", {"cpus": 1.5}, 1.5, 2.0),
        ("pids", {"pids": 300}, 300, 500),  # half of the policy's pids_total
    ],
)
async def test_a_tenant_gets_its_share_of_each_resource(
    sessions, resource, limits, reserved, allowed
) -> None:
    ann, bob, device = tenant(), tenant(), node()
    small = {"memory": 64 * MIB, "cpus": 0.1, "pids": 8}
    first = await create(sessions, ann, device, limits={**small, **limits})
    problem = await refused(sessions, ann, device, limits={**small, **limits})
    assert (problem.status, problem.code) == (403, "node_share_exceeded")
    assert problem.extra == {
        "resource": resource,
        "reserved": reserved,
        "asked": limits[resource],
        "allowed": allowed,
    }
    # The share is per tenant: another tenant gets its own on the same node.
    await create(sessions, bob, device, limits={**small, **limits})
    # A container removed gives its share back.
    async with sessions() as session, session.begin():
        gone = await session.get(Container, first.id)
        assert gone is not None
        gone.removed_at = gone.created_at
    await create(sessions, ann, device, limits={**small, **limits})


async def test_the_shares_come_from_the_settings(sessions) -> None:
    """A whole node: memory and PIDs up to the node's own; CPU limits are not counted (they
    are caps: five 1-CPU containers fit a 4-CPU node, sharing its time)."""
    ann, device = tenant(), node()
    whole = NodeShares(memory=1.0, cpus=1.0, pids=1.0)
    for _ in range(5):
        await create(
            sessions, ann, device, shares=whole, limits={"cpus": 1.0, "memory": GIB // 2, "pids": 8}
        )
    problem = await refused(
        sessions, ann, device, shares=whole, limits={"cpus": 0.5, "memory": 2 * GIB, "pids": 8}
    )
    assert (problem.extra["resource"], problem.extra["allowed"]) == ("memory", 4 * GIB)
    problem = await refused(
        sessions, ann, device, shares=NodeShares(memory=1.0, cpus=0.75, pids=1.0),
        limits={"cpus": 0.5, "pids": 8},
    )  # fmt: skip
    assert (problem.extra["resource"], problem.extra["allowed"]) == ("cpus", 3.0)


@pytest.mark.parametrize(
    ("policy", "host", "code", "named"),
    [
        (POLICY, 30100, "port_out_of_range", 30100),
        (POLICY, 80, "port_out_of_range", 80),
        ({**POLICY, "ports": None}, 30000, "ports_not_allowed", 30001),
        (None, 30000, "ports_not_allowed", 30001),  # an older agent: nothing published
    ],
)
async def test_ports_the_node_does_not_publish_are_refused(
    sessions, policy, host, code, named
) -> None:
    device = node(policy=policy)
    ports = [{"host": 30001, "container": 8080}, {"host": host, "container": 80}]
    problem = await refused(sessions, tenant(), device, ports=ports)
    assert (problem.status, problem.code) == (422, code)
    assert (problem.extra["port"], problem.extra["protocol"]) == (named, "tcp")
    if code == "port_out_of_range":
        assert problem.extra["range"] == [30000, 30099]


async def test_ports_and_no_network_reach_the_nodes_spec(sessions) -> None:
    device = node()
    ports = [{"host": 30053, "container": 53, "protocol": "udp"}]
    published = await create(sessions, tenant(), device, ports=ports, limits={"disk": 64 * MIB})
    alone = await create(sessions, tenant(), device, network="none")
    async with sessions() as session:
        commands = {
            row.container_id: row.payload["spec"]
            for row in await session.scalars(
                select(CommandRow).where(CommandRow.container_id.in_([published.id, alone.id]))
            )
        }
    assert commands[published.id]["ports"] == ports
    assert commands[published.id]["network"] == "tenant"
    assert commands[published.id]["limits"]["disk"] == 64 * MIB
    assert (commands[alone.id]["network"], commands[alone.id]["ports"]) == ("none", [])
