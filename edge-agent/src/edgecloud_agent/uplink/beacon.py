"""Whether the mesh hop to a neighbour's relay still works, cheaply: the relay's beacons.

A node on the mesh reaches the router through a neighbour's relay over one TCP connection
carrying TLS. While it is idle nothing on it can say the hop still works, short of
WebSocket pings, which cost the mesh about 400 bytes each (ping, pong and both
acknowledgements, over TLS); so a dead hop was noticed only by a heartbeat going
unanswered, a minute or more later. Instead the relay sends each neighbour it relays for
a one-byte UDP datagram every ``interval_s`` (63 bytes on the wire with uncompressed IPv6
headers, less under 6LoWPAN's compression; one way, no acknowledgement), and the
neighbour takes the hop for dead after ``silence_s`` without one (:func:`watch`).

The neighbour asks for beacons with a datagram to the relay's port (the one its TCP
connection goes to), at the start and again when one is late (``ASK_BEFORE_S``). The relay
beacons only to hosts it is relaying a connection for, and at most to as many as it takes
connections, so it cannot be made to send datagrams elsewhere. A beacon carries nothing:
one forged by someone on the mesh can only keep a dead hop looking alive until the
heartbeat notices, as before.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

ASK = b"?"
BEACON = b"!"
"""Not empty: asyncio sends no empty datagram."""
ASK_BEFORE_S = 1.5
"""A neighbour that has heard nothing asks again this long before its silence ends: a
beacon lost on the way (2 % of them on a 6LoWPAN hop) is answered at once, so the relay
needs to beacon only once within the silence, and a hop is taken for dead only when a
beacon and the ask or its answer are all lost, or when it is."""


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self._on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._on_datagram(data, (str(addr[0]), int(str(addr[1]))))

    def error_received(self, exc: Exception) -> None:
        logger.debug("beacon socket: %s", exc)


class Beacons:
    """The relay's side: beacons every ``interval_s`` to the neighbours that asked, while
    ``relaying(host)`` says it relays a connection of theirs."""

    def __init__(
        self, *, interval_s: float, relaying: Callable[[str], bool], max_targets: int
    ) -> None:
        if interval_s <= 0 or max_targets < 1:
            raise ValueError("beacons need a positive interval and room for a target")
        self.interval_s = interval_s
        self._relaying = relaying
        self._max_targets = max_targets
        self._targets: set[tuple[str, int]] = set()
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._asked), local_addr=(host, port)
        )
        self._task = asyncio.create_task(self._beacon(), name="relay-beacons")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()

    def _asked(self, data: bytes, addr: tuple[str, int]) -> None:
        if data != ASK or not self._relaying(addr[0]):
            return
        if addr not in self._targets and len(self._targets) >= self._max_targets:
            return
        self._targets.add(addr)
        self._send(addr)  # at once: the neighbour asked because one was late

    async def _beacon(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            for addr in list(self._targets):
                if self._relaying(addr[0]):
                    self._send(addr)
                else:
                    self._targets.discard(addr)

    def _send(self, addr: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(BEACON, addr)
            self.sent += 1


async def watch(relay: tuple[str, int], *, silence_s: float) -> None:
    """The neighbour's side: return once the relay at ``relay`` has been silent for
    ``silence_s`` (its beacons asked for at once, and again when one is late)."""
    loop = asyncio.get_running_loop()
    heard = time.monotonic()

    def on_datagram(_: bytes, __: tuple[str, int]) -> None:
        nonlocal heard
        heard = time.monotonic()

    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Endpoint(on_datagram), remote_addr=relay
    )
    try:
        transport.sendto(ASK)
        asked = time.monotonic()
        while (quiet := time.monotonic() - heard) < silence_s:
            # Late (lost, or the relay never heard the ask): ask again, once in a while.
            late = quiet > silence_s - ASK_BEFORE_S
            if late and time.monotonic() - asked > silence_s / 2:
                with contextlib.suppress(OSError):
                    transport.sendto(ASK)
                asked = time.monotonic()
            await asyncio.sleep(min(0.5, silence_s - quiet))
    finally:
        transport.close()
