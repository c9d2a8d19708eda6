"""Each tenant's own network on this node.

A tenant's containers share one bridge network of the tenant's, made when its first
container is created here and removed when its last one goes. Docker keeps bridge networks
apart (its isolation chains drop traffic between two of them); the node's firewall
(:mod:`.firewall`) keeps every tenant network from the node itself and from its neighbours.
A network is taken for a tenant's only if its labels say so: a network of that name that
someone else made is refused, never joined.

Each network's subnet is a small one from the node's pool (``AGENT_TENANT_SUBNETS``, /26
each by default): Docker's own pools hold about thirty networks, far fewer than the tenants
a node may host.
"""

import asyncio
import hashlib
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ..runtime.docker import DockerRuntime
from ..runtime.errors import PolicyRefused
from ..runtime.hardening import LABEL_MANAGED

NETWORK_PREFIX = "edgecloud-t-"
BRIDGE_PREFIX = "ectn"
"""The bridges' interface names (the firewall matches ``ectn+``): 4 + 11 characters, the
most Linux allows."""
LABEL_NETWORK_TENANT = "edgecloud.network.tenant"
NO_NETWORK = "none"
DEFAULT_POOL = ipaddress.IPv4Network("172.20.0.0/14")
"""Inside Docker's own 172.16/12 range, which its allocator skips where ours are."""


def _key(tenant_id: str) -> str:
    return hashlib.sha256(tenant_id.encode()).hexdigest()[:11]


def network_name(tenant_id: str) -> str:
    return f"{NETWORK_PREFIX}{_key(tenant_id)}"


def bridge_name(tenant_id: str) -> str:
    return f"{BRIDGE_PREFIX}{_key(tenant_id)}"


def network_body(tenant_id: str, subnet: ipaddress.IPv4Network) -> dict[str, object]:
    """``POST /networks/create`` for the tenant's network."""
    return {
        "Name": network_name(tenant_id),
        "Driver": "bridge",
        "CheckDuplicate": True,
        "EnableIPv6": False,
        "Internal": False,
        "Attachable": False,
        "IPAM": {
            "Driver": "default",
            "Config": [{"Subnet": str(subnet), "Gateway": str(next(subnet.hosts()))}],
        },
        "Options": {
            "com.docker.network.bridge.name": bridge_name(tenant_id),
            # Within one tenant, its containers talk to each other (a database and its app).
            "com.docker.network.bridge.enable_icc": "true",
            "com.docker.network.bridge.enable_ip_masquerade": "true",
        },
        "Labels": {LABEL_MANAGED: "true", LABEL_NETWORK_TENANT: tenant_id},
    }


class TenantNetworks:
    """Make, hand out and remove the tenants' networks; one tenant's at a time.

    A container is created while its tenant's network is :meth:`held`, and a network is
    removed only under the same hold, so a create never finds its network gone."""

    def __init__(
        self,
        runtime: DockerRuntime,
        *,
        pool: ipaddress.IPv4Network = DEFAULT_POOL,
        prefix: int = 26,
    ) -> None:
        self._runtime = runtime
        self._pool = pool
        self._prefix = prefix
        self._locks: dict[str, asyncio.Lock] = {}
        self._allocating = asyncio.Lock()

    @asynccontextmanager
    async def held(self, tenant_id: str) -> AsyncIterator[str]:
        """The tenant's network (made now if it has none), kept while the block runs."""
        async with self._lock(tenant_id):
            yield await self._ensure(tenant_id)

    async def release(self, tenant_id: str) -> None:
        """Remove the tenant's network once no container of the node is attached to it."""
        name = network_name(tenant_id)
        async with self._lock(tenant_id):
            found = await self._runtime.network(name)
            if found is None or not _is_tenants(found, tenant_id):
                return
            if await self._runtime.containers_on_network(name) == 0:
                await self._runtime.remove_network(name)

    def _lock(self, tenant_id: str) -> asyncio.Lock:
        return self._locks.setdefault(tenant_id, asyncio.Lock())

    async def _ensure(self, tenant_id: str) -> str:
        name = network_name(tenant_id)
        found = await self._runtime.network(name)
        if found is None:
            # One allocation at a time: two tenants never pick the same free subnet.
            async with self._allocating:
                taken = await self._runtime.subnets()
                await self._runtime.create_network(network_body(tenant_id, self._free(taken)))
            found = await self._runtime.network(name)
        if found is None or not _is_tenants(found, tenant_id):
            raise PolicyRefused(f"network {name} exists but is not this tenant's")
        return name

    def _free(self, taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
        for subnet in self._pool.subnets(new_prefix=self._prefix):
            if not any(subnet.overlaps(other) for other in taken):
                return subnet
        raise PolicyRefused(f"no free subnet left in {self._pool} for another tenant network")


def _is_tenants(network: dict[str, object], tenant_id: str) -> bool:
    labels = network.get("Labels") or {}
    options = network.get("Options") or {}
    return (
        isinstance(labels, dict)
        and labels.get(LABEL_NETWORK_TENANT) == tenant_id
        and labels.get(LABEL_MANAGED) == "true"
        and isinstance(options, dict)
        and options.get("com.docker.network.bridge.name") == bridge_name(tenant_id)
    )
