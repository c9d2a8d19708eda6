"""One direction of a relayed connection: bytes as they come, at a bounded rate.

The relay does not look at what it carries (a neighbour's uplink is usually TLS, which it
could not read anyway), so a pump only moves chunks and counts them.
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

CHUNK = 4096
"""The most a pump reads, takes from its bucket and writes at once."""


class TokenBucket:
    """``rate`` bytes per second on average, ``burst`` bytes at once at most.

    A take larger than what is left goes into debt and sleeps it off, so data in pieces of
    any size passes at the average rate.
    """

    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._stamp = time.monotonic()

    async def take(self, count: int) -> None:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate) - count
        self._stamp = now
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self._rate)


@dataclass(eq=False)
class Way:
    """One direction of a relayed connection."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    bucket: TokenBucket
    on_sent: Callable[[int], None]
    sent: int = 0

    async def pump(self, first: bytes = b"") -> None:
        """``first``, then bytes from one side to the other until that side stops or goes
        away."""
        try:
            chunk = first or await self.reader.read(CHUNK)
            while chunk:
                await self.bucket.take(len(chunk))
                self.writer.write(chunk)
                self.sent += len(chunk)
                self.on_sent(len(chunk))
                await self.writer.drain()
                chunk = await self.reader.read(CHUNK)
        except OSError:
            pass  # either side went away: the relay closes both
