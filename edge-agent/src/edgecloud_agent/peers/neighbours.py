"""Round trips to nearby peers, measured by this node and reported in its heartbeats.

The registry names the peers (in the answer to a full heartbeat); the node measures how
long a TCP connection to each one's broker takes to open, which is what a migration's
first message to that peer will cost. The scheduler prefers near peers.
"""

import asyncio
import contextlib
import logging
import time
from urllib.parse import urlsplit

from edgecloud_contracts.heartbeat import MAX_NEIGHBOURS

logger = logging.getLogger(__name__)


class NeighbourProber:
    def __init__(self, *, every_s: float = 30.0, timeout_s: float = 1.0) -> None:
        self._every_s = every_s
        self._timeout_s = timeout_s
        self._peers: dict[str, str] = {}
        self._addresses: dict[str, list[str]] = {}
        self._rtt_ms: dict[str, float] = {}
        self._changed = asyncio.Event()

    def update(self, peers: dict[str, str], addresses: dict[str, list[str]] | None = None) -> None:
        """The peers the cloud named (and, for those reached over several links, their
        addresses in order); measured at once when they changed."""
        peers = dict(list(peers.items())[:MAX_NEIGHBOURS])
        self._addresses = {key: urls for key, urls in (addresses or {}).items() if key in peers}
        if peers != self._peers:
            self._peers = peers
            self._rtt_ms = {k: v for k, v in self._rtt_ms.items() if k in peers}
            self._changed.set()

    def rtts(self) -> dict[str, float]:
        """The latest round trips in ms, of the peers that answered."""
        return dict(self._rtt_ms)

    async def run(self) -> None:
        while True:
            await self.measure()
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self._every_s)

    async def measure(self) -> None:
        peers = dict(self._peers)
        results = await asyncio.gather(
            *(
                self._first_round_trip(self._addresses.get(key) or [url])
                for key, url in peers.items()
            )
        )
        self._rtt_ms = {
            key: rtt for key, rtt in zip(peers, results, strict=True) if rtt is not None
        }

    async def _first_round_trip(self, urls: list[str]) -> float | None:
        """Over the peer's first address that answers: its mesh address when this node's
        WAN (or the peer's) is gone, so the peer stays near for a move over the mesh."""
        for url in urls:
            if (rtt := await round_trip(url, self._timeout_s)) is not None:
                return rtt
        return None


async def round_trip(url: str, timeout_s: float) -> float | None:
    """How long a TCP connection to the broker at ``url`` takes to open, in ms; None when
    it does not open in ``timeout_s``."""
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(parts.hostname, parts.port or 1883)
    except (OSError, TimeoutError):
        return None
    elapsed = (time.perf_counter() - started) * 1000
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return round(elapsed, 2)
