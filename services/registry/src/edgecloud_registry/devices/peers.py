"""Which nodes a node should measure its round trips to: the online ones at its location
that take part in peer migration. Read from the database at most every few seconds, since
it answers every full heartbeat."""

import asyncio
import time
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.heartbeat import MAX_NEIGHBOURS, DeviceInfo, DeviceStatus

from .models import Device


class PeerDirectory:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, max_age_s: float = 10.0):
        self._sessions = sessions
        self._max_age_s = max_age_s
        self._by_location: dict[str, dict[str, str]] = {}
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    async def near(self, device: DeviceInfo) -> dict[str, str]:
        """Up to MAX_NEIGHBOURS peers of ``device`` (key -> peer URL), itself excluded."""
        if time.monotonic() - self._read_at > self._max_age_s:
            async with self._lock:
                if time.monotonic() - self._read_at > self._max_age_s:
                    await self._read()
        peers = self._by_location.get(device.location, {})
        return dict(sorted((k, u) for k, u in peers.items() if k != device.key)[:MAX_NEIGHBOURS])

    async def _read(self) -> None:
        query = select(Device.key, Device.location, Device.peer_url).where(
            Device.peer_url != "",
            Device.status.in_([DeviceStatus.ONLINE.value, DeviceStatus.DEGRADED.value]),
        )
        by_location: dict[str, dict[str, str]] = defaultdict(dict)
        async with self._sessions() as session:
            for key, location, peer_url in await session.execute(query):
                by_location[location][key] = peer_url
        self._by_location, self._read_at = dict(by_location), time.monotonic()
