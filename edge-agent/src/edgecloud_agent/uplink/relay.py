"""The border-router relay: neighbours' uplinks over the LoWPAN mesh, on to the router.

A neighbour that lost its WAN opens a TCP connection to this node's LoWPAN address and
speaks to the router through it as if it were connected to the router itself: TLS
(``wss://``) from the neighbour ends at the router, so this node carries ciphertext it can
neither read nor alter unnoticed. The relay therefore parses nothing: it opens a TCP
connection to the one router address it was given (the host and port of this node's own
router URL) and pumps bytes both ways. Nothing a neighbour sends picks the destination and
no name a neighbour sends is resolved, so the relay reaches that address and no other.

Everything is bounded, so that one neighbour can neither hog this node's WAN nor starve
the others: the number of connections (beyond it a connection is dropped at once, without
a task), bytes per second each way on each connection (a token bucket with a small burst),
the time a neighbour has to start speaking before the router is even dialled, and the time
a connection may stay silent. With ``beacon_interval_s`` it also tells the neighbours it
relays for, cheaply, that the mesh hop to it still works (:mod:`.beacon`).
"""

import asyncio
import logging
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass
from functools import partial
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from .beacon import Beacons
from .relay_pump import CHUNK, TokenBucket, Way

logger = logging.getLogger(__name__)

_CLOSE_S = 1.0
"""How long a closing connection gets to send what was written before it is dropped."""
_WARN_EVERY_S = 10.0
_DEFAULT_PORTS = {"ws": 80, "wss": 443}

_Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def router_address(url: str) -> tuple[str, int]:
    """(host, port) of the node's own ``ws://`` or ``wss://`` router URL, for :class:`Relay`."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"the relay forwards to a ws:// or wss:// router only, not {url!r}")
    return parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme]


def host_port(text: str) -> tuple[str, int]:
    """(host, port) of ``HOST:PORT`` or ``[IPv6]:PORT``, e.g. ``[fd00:1::2]:8099``: where the
    relay listens, or where a neighbour reaches it."""
    wrong = ValueError(f"{text!r} is not HOST:PORT or [IPv6]:PORT")
    parts = urlsplit(f"//{text.strip()}")
    try:
        port = parts.port
    except ValueError as err:
        raise wrong from err
    if not parts.hostname or port is None or parts.path or parts.username:
        raise wrong
    return parts.hostname, port


@dataclass(slots=True)
class RelayStats:
    accepted: int = 0
    """Connections taken in (under the connection limit)."""
    refused_full: int = 0
    """Connections dropped at once: the relay already served its limit."""
    refused_silent: int = 0
    """Neighbours that sent nothing within the handshake timeout (the router never dialled)."""
    router_unreachable: int = 0
    """Connections the router did not accept in time (down, refused, too slow)."""
    relayed: int = 0
    closed_idle: int = 0
    bytes_up: int = 0
    """Neighbours to the router (likewise ``bytes_down``)."""
    bytes_down: int = 0
    active: int = 0


class _ThrottledWarnings:
    """At most one WARNING line of a kind per ``every_s``; the next one counts the rest."""

    def __init__(self, every_s: float) -> None:
        self._every_s = every_s
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()

    def warn(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -math.inf) < self._every_s:
            self._held[kind] += 1
            return
        self._last[kind] = now
        if held := self._held.pop(kind, 0):
            message += " (and %d more since the last such line)"
            args = (*args, held)
        logger.warning(message, *args)


class Relay:
    """Relays neighbours' TCP connections to one router address (see the module)."""

    def __init__(
        self,
        *,
        listen_host: str,
        listen_port: int,
        router_host: str,
        router_port: int,
        max_connections: int = 8,
        rate_bytes_per_s: int = 32_000,
        handshake_timeout_s: float = 5.0,
        idle_timeout_s: float = 120.0,
        beacon_interval_s: float = 0.0,
    ) -> None:
        """``beacon_interval_s``: how often neighbours that ask get a beacon on UDP at the
        listening port (0: none)."""
        if min(max_connections, rate_bytes_per_s) < 1:
            raise ValueError("relay limits must be positive")
        if min(handshake_timeout_s, idle_timeout_s) <= 0:
            raise ValueError("relay timeouts must be positive")
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.router_host = router_host
        self.router_port = router_port
        self.max_connections = max_connections
        self.rate_bytes_per_s = rate_bytes_per_s
        self.burst_bytes = max(CHUNK, rate_bytes_per_s // 4)
        self.handshake_timeout_s = handshake_timeout_s
        self.idle_timeout_s = idle_timeout_s
        bracketed = f"[{router_host}]" if ":" in router_host else router_host
        self._router = f"{bracketed}:{router_port}"
        self.stats = RelayStats()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._warnings = _ThrottledWarnings(_WARN_EVERY_S)
        self._relayed_hosts: Counter[str] = Counter()
        self._beacons = (
            Beacons(
                interval_s=beacon_interval_s,
                relaying=lambda host: self._relayed_hosts[host] > 0,
                max_targets=max_connections,
            )
            if beacon_interval_s > 0
            else None
        )

    @property
    def port(self) -> int:
        """The port it listens on (the system's choice when ``listen_port`` is 0)."""
        if self._server is None:
            raise RuntimeError("the relay is not started")
        return int(self._server.sockets[0].getsockname()[1])

    def snapshot(self) -> dict[str, int]:
        """The counters, for logs and heartbeats."""
        return {name: int(value) for name, value in asdict(self.stats).items()}

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.listen_host, self.listen_port)
        if self._beacons is not None:
            await self._beacons.start(self.listen_host, self.port)
        logger.info(
            "relaying neighbours from %s port %d to the router at %s",
            self.listen_host,
            self.port,
            self._router,
        )

    async def close(self) -> None:
        """Stop listening, end every connection and wait until each is closed."""
        self._closing = True
        if self._beacons is not None:
            await self._beacons.close()
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        logger.info("relay closed: %s", self.snapshot())

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback, so that a connection over the limit costs no task at all and
        # each one served is known from its first moment.
        if self._closing:
            writer.transport.abort()
            return
        if len(self._tasks) >= self.max_connections:
            self.stats.refused_full += 1
            self._warnings.warn(
                "full", "relay full (%d): dropped %s", self.max_connections, _peer(writer)
            )
            writer.transport.abort()
            return
        self.stats.accepted += 1
        self.stats.active += 1
        task = asyncio.get_running_loop().create_task(
            self._serve(reader, writer), name=f"relay {_peer(writer)}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        host = _host(writer)
        self._relayed_hosts[host] += 1
        task.add_done_callback(lambda _: self._relayed_hosts.subtract((host,)))

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.stats.active -= 1
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("relay connection failed", exc_info=error)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer(writer)
        try:
            first = await self._first_bytes(peer, reader)
            if not first:
                return
            router = await self._open_router(peer)
            if router is None:
                return
            try:
                await self._relay(peer, first, (reader, writer), router)
            finally:
                await _close(router[1])
        except OSError as err:
            logger.info("lost %s: %s", peer, err)
        finally:
            await _close(writer)

    async def _first_bytes(self, peer: str, reader: asyncio.StreamReader) -> bytes:
        """What the neighbour says first (its TLS or WebSocket handshake begins): the router
        is dialled only for a neighbour that speaks in time. Empty: it did not."""
        try:
            async with asyncio.timeout(self.handshake_timeout_s):
                return await reader.read(CHUNK)
        except TimeoutError:
            self.stats.refused_silent += 1
            self._warnings.warn(
                "silent", "closed %s: nothing sent in %g s", peer, self.handshake_timeout_s
            )
            return b""

    async def _open_router(self, peer: str) -> _Streams | None:
        """A connection to the router: the configured address, whatever the neighbour sent."""
        try:
            async with asyncio.timeout(self.handshake_timeout_s):
                return await asyncio.open_connection(self.router_host, self.router_port)
        except (OSError, TimeoutError) as err:
            self.stats.router_unreachable += 1
            self._warnings.warn("router", "cannot relay %s to %s: %r", peer, self._router, err)
            return None

    async def _relay(
        self,
        peer: str,
        first: bytes,
        neighbour: _Streams,
        router: _Streams,
    ) -> None:
        started = time.monotonic()
        self.stats.relayed += 1
        logger.info("relaying %s to the router", peer)
        loop = asyncio.get_running_loop()
        idle = asyncio.timeout(self.idle_timeout_s)

        def sent(count: int, *, upward: bool) -> None:
            if upward:
                self.stats.bytes_up += count
            else:
                self.stats.bytes_down += count
            idle.reschedule(loop.time() + self.idle_timeout_s)

        up = Way(neighbour[0], router[1], self._bucket(), partial(sent, upward=True))
        down = Way(router[0], neighbour[1], self._bucket(), partial(sent, upward=False))
        try:
            async with idle, asyncio.TaskGroup() as tasks:
                pumping_up = tasks.create_task(up.pump(first), name=f"relay-up {peer}")
                pumping_down = tasks.create_task(down.pump(), name=f"relay-down {peer}")
                done, _ = await asyncio.wait(
                    {pumping_up, pumping_down}, return_when=asyncio.FIRST_COMPLETED
                )
                pumping_up.cancel()
                pumping_down.cancel()
        except TimeoutError:
            self.stats.closed_idle += 1
            reason = f"idle for {self.idle_timeout_s:g} s"
        else:
            reason = "neighbour left" if pumping_up in done else "router closed"
        logger.info(
            "closed %s after %.1f s (%d bytes up, %d down): %s",
            peer,
            time.monotonic() - started,
            up.sent,
            down.sent,
            reason,
        )

    def _bucket(self) -> TokenBucket:
        return TokenBucket(self.rate_bytes_per_s, self.burst_bytes)


def _host(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    return str(address[0]) if address else ""


def _peer(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")  # None if the peer is already gone
    if not address:
        return "(gone)"
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close after what was written has gone out, or drop the connection if it will not."""
    writer.close()
    try:
        async with asyncio.timeout(_CLOSE_S):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        pass
    finally:
        writer.transport.abort()
