"""Which nodes a node should measure its round trips to: those at its location that take
part in peer migration, online ones first, then those gone quiet lately. The quiet ones are
measured too because the migration-scheduler asks whether anyone still reaches a silent
node's broker before it declares the node lost: a node the cloud cannot hear but its
neighbours reach keeps its containers. Read from the database at most every few seconds,
since it answers every full heartbeat."""

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.heartbeat import MAX_NEIGHBOURS, DeviceInfo, DeviceStatus
from edgecloud_servicekit.db import utcnow

from .models import Device

QUIET_HORIZON = timedelta(hours=1)
"""A node silent longer than this is not measured any more (retired, unplugged): by then the
scheduler has long decided whether it was lost."""


class PeerDirectory:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, max_age_s: float = 10.0):
        self._sessions = sessions
        self._max_age_s = max_age_s
        self._by_location: dict[str, list[tuple[str, str]]] = {}
        self._addresses: dict[str, list[str]] = {}
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    async def near(self, device: DeviceInfo) -> dict[str, str]:
        """Up to MAX_NEIGHBOURS peers of ``device`` (key -> peer URL), itself excluded: the
        online ones first."""
        if time.monotonic() - self._read_at > self._max_age_s:
            async with self._lock:
                if time.monotonic() - self._read_at > self._max_age_s:
                    await self._read()
        peers = self._by_location.get(device.location, [])
        return dict([(k, u) for k, u in peers if k != device.key][:MAX_NEIGHBOURS])

    def addresses(self, keys: Iterable[str]) -> dict[str, list[str]]:
        """The brokers of ``keys`` (peers :meth:`near` named) over each of their links, for
        those that announce several."""
        return {key: self._addresses[key] for key in keys if key in self._addresses}

    async def _read(self) -> None:
        active = {DeviceStatus.ONLINE.value, DeviceStatus.DEGRADED.value}
        quiet_since = utcnow() - QUIET_HORIZON
        query = select(
            Device.key,
            Device.location,
            Device.peer_url,
            Device.status,
            Device.last_seen,
            Device.peer_urls,
        ).where(Device.peer_url != "")
        found: dict[str, list[tuple[bool, str, str]]] = defaultdict(list)
        addresses: dict[str, list[str]] = {}
        async with self._sessions() as session:
            rows = await session.execute(query)
            for key, location, peer_url, status, last_seen, peer_urls in rows:
                if peer_urls and len(peer_urls) > 1:
                    addresses[key] = list(peer_urls)
                if status in active:
                    found[location].append((False, key, peer_url))
                elif last_seen is not None and last_seen >= quiet_since:
                    found[location].append((True, key, peer_url))
        self._by_location = {
            location: [(key, url) for _, key, url in sorted(peers)]
            for location, peers in found.items()
        }
        self._addresses = addresses
        self._read_at = time.monotonic()
