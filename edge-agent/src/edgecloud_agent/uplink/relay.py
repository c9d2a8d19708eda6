"""The border-router relay: neighbours' uplinks over the LoWPAN mesh, on to the router.

A neighbour that lost its WAN connects to ``ws://[this node's LoWPAN address]:port/ws``
exactly as it would connect to the router. The relay checks the WebSocket upgrade, opens
a TCP connection to the one router address it was given, passes the router's 101 back and
pumps both ways. Nothing in a request picks the destination, and the relay resolves no
name a neighbour sends, so it reaches that address and no other.

Everything is bounded, so that one neighbour can neither hog this node's WAN nor starve
the others: the number of connections, bytes per second each way on each connection (a
token bucket with a small burst), the size of a frame, the time to finish the handshake
and the time a connection may stay silent. A neighbour's frames are checked header by
header before any of their bytes go on (:mod:`.relay_wire`); a bad one closes that
connection only.
"""

import asyncio
import logging
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass
from functools import partial
from http import HTTPStatus
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from .relay_pump import CHUNK, TokenBucket, Way
from .relay_wire import (
    ClientFrames,
    Refused,
    UpgradeRequest,
    close_frame,
    forwarded_head,
    http_answer,
    parse_upgrade,
    read_head,
    response_status,
)

logger = logging.getLogger(__name__)

_LINGER_S = 1.0
"""How long a refused or closed peer gets to read our last words before the socket goes."""
_LINGER_BYTES = 65_536
_WARN_EVERY_S = 10.0
_TASKS_PER_CONNECTION = 4
"""Connections being relayed or refused, at most, per relayed one: beyond that a flood is
dropped at once, unanswered, so that refusing it costs nothing but the accept."""

_Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def router_address(url: str) -> tuple[str, int, str]:
    """(host, port, path) of the node's own ``ws://`` router URL, for :class:`Relay`."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"the relay forwards to a ws:// router only, not {url!r}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, parts.port or 80, path


def listen_address(text: str) -> tuple[str, int]:
    """(host, port) of ``HOST:PORT`` or ``[IPv6]:PORT``, e.g. ``[fd00:1::2]:8099``."""
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
    refused_handshake: int = 0
    router_unreachable: int = 0
    """Upgrades the router did not answer with a 101 in time (down, refused, too slow)."""
    relayed: int = 0
    closed_bad_frames: int = 0
    closed_idle: int = 0
    bytes_up: int = 0
    """Neighbours to the router, WebSocket frames only (likewise ``bytes_down``)."""
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
    """Relays neighbours' WebSocket connections to one router address (see the module)."""

    def __init__(
        self,
        *,
        listen_host: str,
        listen_port: int,
        router_host: str,
        router_port: int,
        router_path: str = "/ws",
        max_connections: int = 8,
        rate_bytes_per_s: int = 32_000,
        max_frame_bytes: int = 65_536,
        handshake_timeout_s: float = 5.0,
        idle_timeout_s: float = 120.0,
        max_head_bytes: int = 8192,
    ) -> None:
        if min(max_connections, rate_bytes_per_s, max_frame_bytes, max_head_bytes) < 1:
            raise ValueError("relay limits must be positive")
        if min(handshake_timeout_s, idle_timeout_s) <= 0:
            raise ValueError("relay timeouts must be positive")
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.router_host = router_host
        self.router_port = router_port
        self.router_path = router_path
        self.max_connections = max_connections
        self.rate_bytes_per_s = rate_bytes_per_s
        self.burst_bytes = max(CHUNK, rate_bytes_per_s // 4)
        self.max_frame_bytes = max_frame_bytes
        self.handshake_timeout_s = handshake_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.max_head_bytes = max_head_bytes
        bracketed = f"[{router_host}]" if ":" in router_host else router_host
        self._router = f"{bracketed}:{router_port}"
        self.stats = RelayStats()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._warnings = _ThrottledWarnings(_WARN_EVERY_S)

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
        self._server = await asyncio.start_server(
            self._accept, self.listen_host, self.listen_port, limit=self.max_head_bytes
        )
        logger.info(
            "relaying neighbours from %s port %d to the router at %s%s",
            self.listen_host,
            self.port,
            self._router,
            self.router_path,
        )

    async def close(self) -> None:
        """Stop listening, end every connection and wait until each is closed."""
        self._closing = True
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
        # A plain callback, so that each connection's task is known from its first moment.
        if self._closing:
            writer.transport.abort()
            return
        if len(self._tasks) >= self.max_connections * _TASKS_PER_CONNECTION:
            self.stats.refused_full += 1
            self._warnings.warn("flood", "relay flooded: dropped %s unanswered", _peer(writer))
            writer.transport.abort()
            return
        task = asyncio.get_running_loop().create_task(
            self._serve(reader, writer), name=f"relay {_peer(writer)}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("relay connection failed", exc_info=error)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer(writer)
        try:
            if self.stats.active >= self.max_connections:
                self.stats.refused_full += 1
                self._warnings.warn(
                    "full", "relay full (%d connections): refused %s", self.max_connections, peer
                )
                await _linger(reader, writer, http_answer(HTTPStatus.SERVICE_UNAVAILABLE))
                return
            self.stats.accepted += 1
            self.stats.active += 1
            try:
                router = await self._handshake(peer, reader, writer)
                if router is not None:
                    try:
                        await self._relay(peer, (reader, writer), router)
                    finally:
                        await _close(router[1])
            finally:
                self.stats.active -= 1
        except OSError as err:
            logger.info("lost %s: %s", peer, err)
        finally:
            await _close(writer)

    async def _handshake(
        self, peer: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> _Streams | None:
        """Check the neighbour's upgrade and pass it on: the router's streams once it said 101."""
        try:
            async with asyncio.timeout(self.handshake_timeout_s):
                head = await read_head(reader)
            request = parse_upgrade(head, path=self.router_path)
        except TimeoutError:
            request, refusal = None, Refused(HTTPStatus.REQUEST_TIMEOUT, "no request in time")
        except Refused as err:
            request, refusal = None, err
        if request is None:
            self.stats.refused_handshake += 1
            self._warnings.warn("handshake", "refused %s: %s", peer, refusal)
            await _linger(reader, writer, http_answer(refusal.status))
            return None
        try:
            async with asyncio.timeout(self.handshake_timeout_s):
                router, answer = await self._open_router(request)
        except (OSError, TimeoutError, Refused) as err:
            self.stats.router_unreachable += 1
            self._warnings.warn("router", "cannot relay %s to %s: %r", peer, self._router, err)
            await _linger(reader, writer, http_answer(HTTPStatus.BAD_GATEWAY))
            return None
        writer.write(answer)
        return router

    async def _open_router(self, request: UpgradeRequest) -> tuple[_Streams, bytes]:
        """A connection to the router (the configured address, whatever the request said)
        that accepted ``request``, and the router's 101 answer."""
        reader, writer = await asyncio.open_connection(
            self.router_host, self.router_port, limit=self.max_head_bytes
        )
        try:
            writer.write(forwarded_head(request, host=self._router))
            answer = await read_head(reader)
            if (status := response_status(answer)) != HTTPStatus.SWITCHING_PROTOCOLS:
                raise Refused(HTTPStatus.BAD_GATEWAY, f"the router answered {status}")
        except BaseException:
            writer.transport.abort()
            raise
        return (reader, writer), answer

    async def _relay(self, peer: str, neighbour: _Streams, router: _Streams) -> None:
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

        up = Way(
            reader=neighbour[0],
            writer=router[1],
            bucket=self._bucket(),
            on_sent=partial(sent, upward=True),
            check=ClientFrames(self.max_frame_bytes).check,
        )
        down = Way(
            reader=router[0],
            writer=neighbour[1],
            bucket=self._bucket(),
            on_sent=partial(sent, upward=False),
        )
        try:
            async with idle, asyncio.TaskGroup() as tasks:
                pumping_up = tasks.create_task(up.pump(), name=f"relay-up {peer}")
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
            violation = pumping_up.result() if pumping_up in done else None
            if violation is not None:
                self.stats.closed_bad_frames += 1
                self._warnings.warn("frames", "closed %s: %s", peer, violation.reason)
                if not down.mid_frame:
                    await _linger(*neighbour, close_frame(violation.code))
                reason = violation.reason
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


def _peer(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")  # None if the peer is already gone
    if not address:
        return "(gone)"
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _linger(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, last_words: bytes
) -> None:
    """Send ``last_words`` and read what the peer still sends for a moment: closing with
    unread data would reset the connection, and the peer might never see them."""
    try:
        writer.write(last_words)
        async with asyncio.timeout(_LINGER_S):
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            discarded = 0
            while discarded < _LINGER_BYTES and (chunk := await reader.read(CHUNK)):
                discarded += len(chunk)
    except (OSError, TimeoutError):
        pass


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close after what was written has gone out, or drop the connection if it will not."""
    writer.close()
    try:
        async with asyncio.timeout(_LINGER_S):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        pass
    finally:
        writer.transport.abort()
