"""What of a device its viewer is shown. A node is shared: a tenant granted it sees the
node itself and its own containers there, but not other tenants' containers (their Docker
names hold usernames), not the node's plumbing (its broker's address), and of its
neighbours only the devices granted to that tenant too. Operators see everything."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_servicekit.identity import Identity

from .models import DeviceGrant


@dataclass(frozen=True, slots=True)
class Audience:
    tenant_id: str | None
    """None: an operator, shown everything."""
    granted: frozenset[str] = frozenset()
    """The devices granted to the tenant."""

    def neighbours(self, measured: Mapping[str, float]) -> dict[str, float]:
        if self.tenant_id is None:
            return dict(measured)
        return {key: rtt for key, rtt in measured.items() if key in self.granted}

    def peer_url(self, url: str) -> str:
        return url if self.tenant_id is None else ""

    def peer_urls(self, urls: list[str]) -> list[str]:
        return list(urls) if self.tenant_id is None else []

    def containers(self, containers: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        if self.tenant_id is None:
            return list(containers)
        return [c for c in containers if c.get("tenant") == self.tenant_id]


OPERATORS = Audience(tenant_id=None)


async def audience_of(*, session: AsyncSession, caller: Identity) -> Audience:
    """The caller as a viewer of devices: an operator, or a tenant with its grants."""
    if caller.is_operator:
        return OPERATORS
    granted = await session.scalars(
        select(DeviceGrant.device_key).where(DeviceGrant.tenant_id == caller.tenant_id)
    )
    return Audience(tenant_id=caller.tenant_id, granted=frozenset(granted.all()))
