"""One direction of a relayed connection, moved frame by frame at a bounded rate.

The pump follows frame headers (:mod:`.relay_wire`), so it knows where each frame ends:
a neighbour's frame is checked before any byte of it goes on, and the relay can tell
whether a close frame of its own would land between two frames or inside one.
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from .relay_wire import FrameHeader, Violation, read_frame_header

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


def unchecked(_: FrameHeader) -> None:
    """Frames that pass as they are (the router's): only their boundaries are followed."""


@dataclass(eq=False)
class Way:
    """One direction of a relayed connection."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    bucket: TokenBucket
    on_sent: Callable[[int], None]
    check: Callable[[FrameHeader], Violation | None] = unchecked
    sent: int = 0
    mid_frame: bool = False
    """Part of a frame has gone out: nothing else may be written before the rest."""

    async def pump(self) -> Violation | None:
        """Frames from one side to the other until that side stops or sends a bad one."""
        try:
            while (frame := await read_frame_header(self.reader)) is not None:
                if (violation := self.check(frame)) is not None:
                    return violation
                data, left = frame.raw, frame.length
                while True:
                    if left:
                        chunk = await self.reader.read(min(left, CHUNK))
                        if not chunk:
                            return None
                        left -= len(chunk)
                        data += chunk
                    await self._send(data, ends_frame=not left)
                    if not left:
                        break
                    data = b""
        except (asyncio.IncompleteReadError, OSError):
            pass  # either side went away: the relay closes both
        return None

    async def _send(self, data: bytes, *, ends_frame: bool) -> None:
        await self.bucket.take(len(data))
        self.writer.write(data)
        self.mid_frame = not ends_frame
        self.sent += len(data)
        self.on_sent(len(data))
        await self.writer.drain()
