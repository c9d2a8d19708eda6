"""Whether a container fits its node: limits no node of this size (or policy) can honour,
published ports outside what the node's operator allows, and a tenant taking more than its
share of a shared node. Checked before anything is stored or sent; the shares inside the
tenant's serialised create (see the containers router), so racing creates cannot all pass."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_contracts.containers import Limits, PortMapping
from edgecloud_contracts.devices import host_ports
from edgecloud_contracts.heartbeat import NodePolicy
from edgecloud_servicekit.identity import Identity

from .exceptions import ExceedsDevice, NodeShareExceeded, ports_refused
from .models import Container

OLDER_AGENT_POLICY = NodePolicy(pids_per_container=1024, pids_total=32768, ports=None)
"""What the cloud assumes of a node whose agent reports no policy: no published ports."""
SLACK = 1e-9
"""CPU limits are fractions: 0.1 + 0.2 must fit a share of 0.3."""


@dataclass(frozen=True, slots=True)
class NodeShares:
    """The share of one node's memory, CPUs and PIDs a tenant's containers there may
    reserve together (their limits summed)."""

    memory: float
    cpus: float
    pids: float


def policy_of(device: Mapping[str, Any]) -> NodePolicy:
    """The node's policy as the registry shows it, or the one assumed for older agents."""
    found = device.get("policy")
    return NodePolicy.model_validate(found) if found else OLDER_AGENT_POLICY


async def check_fits(
    *,
    session: AsyncSession,
    caller: Identity,
    limits: Limits,
    ports: list[PortMapping],
    device: Mapping[str, Any],
    shares: NodeShares,
) -> None:
    """Refuse limits beyond the node, ports it does not publish, and a tenant that would
    reserve more than its share of the node with its containers there together (so one
    tenant cannot take a shared node for itself). What a device has not told (its size) is
    not checked. Whether the ports are free is the reservation's to say (.ports)."""
    key = str(device["key"])
    policy = policy_of(device)
    memory_total = int(device.get("memory_total") or 0)
    cpu_count = int(device.get("cpu_count") or 0)
    disk_total = int(device.get("disk_total") or 0)
    for limit, asked, has in (
        ("memory", limits.memory, memory_total),
        ("cpus", limits.cpus, cpu_count),
        ("pids", limits.pids, policy.pids_per_container),
        ("disk", limits.disk, disk_total),
    ):
        if has and asked > has:
            raise ExceedsDevice(limit, asked, key, has)
    refused = ports_refused(key, policy, host_ports(ports), taken=set())
    if refused is not None:
        raise refused
    specs = await session.scalars(
        select(Container.spec).where(
            Container.tenant_id == caller.tenant_id,
            Container.device_key == key,
            Container.removed_at.is_(None),
        )
    )
    held = [Limits.model_validate(spec.get("limits", {})) for spec in specs]
    for resource, asked, reserved, total, share in (
        ("memory", limits.memory, sum(h.memory for h in held), memory_total, shares.memory),
        ("cpus", limits.cpus, sum(h.cpus for h in held), cpu_count, shares.cpus),
        ("pids", limits.pids, sum(h.pids for h in held), policy.pids_total, shares.pids),
    ):
        if resource == "cpus" and share >= 1:
            continue  # CPU limits are caps, not reservations: a whole node's worth is no limit
        allowed = total * share
        if total and reserved + asked > allowed + SLACK:
            raise NodeShareExceeded(key, resource, reserved, asked, _whole(resource, allowed))


def _whole(resource: str, allowed: float) -> float:
    """Bytes and PIDs are counted whole."""
    return allowed if resource == "cpus" else int(allowed)
