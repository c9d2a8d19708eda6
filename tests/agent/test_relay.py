"""The border-router relay between real sockets on 127.0.0.1.

Behind the relay runs either a real WebSocket echo "router" (aiohttp.web, path /ws) or a
tripwire: a bare TCP server that only counts the connections it gets, for the cases where
the router must see nothing at all. Neighbours are aiohttp WebSocket clients or a raw
client that writes exactly the bytes a test wants (unmasked frames, RSV bits, lies about
lengths). Timing bounds are lower bounds only, with a wide margin.
"""

import asyncio
import base64
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from edgecloud_agent.uplink import relay as relay_module
from edgecloud_agent.uplink.relay import Relay, listen_address, router_address

KEY = base64.b64encode(b"0123456789abcdef").decode()
WAIT_S = 10.0  # generous deadline for anything that should happen at once


def upgrade_head(
    path: str = "/ws", *, method: str = "GET", version: str = "HTTP/1.1", extra: str = ""
) -> bytes:
    return (
        f"{method} {path} {version}\r\nHost: relay.example\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra}\r\n"
    ).encode()


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """A client frame; ``length`` may lie about the payload."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 1 << 16:
        head += bytes([mask_bit | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + size.to_bytes(8, "big")
    if masked:
        key = os.urandom(4)
        payload = bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))
        head += key
    return head + payload


class RawClient:
    """A neighbour that writes exactly the bytes it is given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def answer(self) -> int:
        """The status code of the response head."""
        async with asyncio.timeout(WAIT_S):
            head = await self.reader.readuntil(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1])

    async def upgrade(self) -> None:
        self.writer.write(upgrade_head())
        assert await self.answer() == 101

    async def frame(self) -> tuple[int, bytes]:
        """The next (unmasked, server) frame's opcode and payload."""
        async with asyncio.timeout(WAIT_S):
            first, second = await self.reader.readexactly(2)
            size = second & 0x7F
            if size >= 126:
                size = int.from_bytes(await self.reader.readexactly(2 if size == 126 else 8))
            return first & 0x0F, await self.reader.readexactly(size)

    async def rest(self) -> bytes:
        """What comes until the relay closes the connection (or resets it)."""
        received = b""
        try:
            async with asyncio.timeout(WAIT_S):
                while chunk := await self.reader.read(65536):
                    received += chunk
        except ConnectionResetError:
            pass
        return received

    def close(self) -> None:
        self.writer.transport.abort()


@dataclass
class Router:
    port: int = 0
    heads: list[CIMultiDict[str]] = field(default_factory=list)
    received: list[str | bytes] = field(default_factory=list)


@pytest.fixture
async def router() -> AsyncIterator[Router]:
    """A WebSocket echo server on 127.0.0.1, path /ws, recording what reaches it."""
    seen = Router()

    async def echo(request: web.Request) -> web.WebSocketResponse:
        seen.heads.append(request.headers.copy())
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        async for message in ws:
            seen.received.append(message.data)
            if message.type is aiohttp.WSMsgType.TEXT:
                await ws.send_str(message.data)
            elif message.type is aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    seen.port = runner.addresses[0][1]
    yield seen
    await runner.cleanup()


@dataclass
class Tripwire:
    port: int = 0
    connections: int = 0


@pytest.fixture
async def tripwire() -> AsyncIterator[Tripwire]:
    """A stand-in router that must never be reached: it counts connections and drops them."""
    wire = Tripwire()

    def touched(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        wire.connections += 1
        writer.transport.abort()

    server = await asyncio.start_server(touched, "127.0.0.1", 0)
    wire.port = server.sockets[0].getsockname()[1]
    yield wire
    server.close()
    await server.wait_closed()


RelayFactory = Callable[..., Awaitable[Relay]]


@pytest.fixture
async def relays() -> AsyncIterator[RelayFactory]:
    """Started relays on 127.0.0.1 (``router_port`` given by the test), all closed after."""
    started: list[Relay] = []

    async def start(router_port: int, **limits: Any) -> Relay:
        relay = Relay(
            listen_host="127.0.0.1", listen_port=0, router_host="127.0.0.1",
            router_port=router_port, **limits,
        )  # fmt: skip
        await relay.start()
        started.append(relay)
        return relay

    yield start
    for relay in started:
        await relay.close()


RawClients = Callable[..., Awaitable[RawClient]]


@pytest.fixture
async def raw_clients() -> AsyncIterator[RawClients]:
    """Raw neighbours of a relay (``upgraded=True``: past the handshake), aborted after."""
    opened: list[RawClient] = []

    async def connect(relay: Relay, *, upgraded: bool = False) -> RawClient:
        opened.append(RawClient(*await asyncio.open_connection("127.0.0.1", relay.port)))
        if upgraded:
            await opened[-1].upgrade()
        return opened[-1]

    yield connect
    for client in opened:
        client.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def ws_url(relay: Relay) -> str:
    return f"http://127.0.0.1:{relay.port}/ws"


async def echoes(ws: aiohttp.ClientWebSocketResponse, data: str | bytes) -> bool:
    await (ws.send_str(data) if isinstance(data, str) else ws.send_bytes(data))
    return bool((await ws.receive(timeout=WAIT_S)).data == data)


async def wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not condition():  # noqa: ASYNC110  # polling counters the relay keeps
            await asyncio.sleep(0.01)


def relay_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("relay") and not t.done()]


def test_addresses_come_from_the_settings() -> None:
    assert router_address("ws://10.0.0.1:8080/ws") == ("10.0.0.1", 8080, "/ws")
    assert router_address("ws://[fd00::1]/ws?x=1") == ("fd00::1", 80, "/ws?x=1")
    with pytest.raises(ValueError, match="ws://"):
        router_address("wss://router.example/ws")
    assert listen_address("[::]:8099") == ("::", 8099)
    assert listen_address("[fd00:1::2]:8099") == ("fd00:1::2", 8099)
    assert listen_address("10.1.0.2:8099") == ("10.1.0.2", 8099)
    for wrong in ("[::]", "host:port", "x@host:1", "host:1/path", ":8099"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            listen_address(wrong)


async def test_messages_pass_both_ways(
    relays: RelayFactory, router: Router, http: aiohttp.ClientSession
) -> None:
    relay = await relays(router.port, rate_bytes_per_s=10_000_000)
    big = os.urandom(60_000)
    async with http.ws_connect(ws_url(relay)) as ws:
        assert await echoes(ws, "hello")
        assert await echoes(ws, b"\x00\x01binary")
        assert await echoes(ws, big)
    assert router.received[:3] == ["hello", b"\x00\x01binary", big]
    stats = relay.stats
    assert (stats.accepted, stats.relayed, stats.refused_handshake) == (1, 1, 0)
    assert stats.bytes_up > 60_000
    assert stats.bytes_down > 60_000


async def test_fragmented_message_and_ping(
    relays: RelayFactory, router: Router, raw_clients: RawClients
) -> None:
    relay = await relays(router.port, rate_bytes_per_s=10_000_000)
    client = await raw_clients(relay, upgraded=True)
    client.writer.write(frame(0x9, b"are you there"))
    assert await client.frame() == (0xA, b"are you there")
    text = ("0123456789" * 6000).encode()
    client.writer.write(frame(0x1, text[:20_000], fin=False))
    client.writer.write(frame(0x9, b"between fragments"))
    client.writer.write(frame(0x0, text[20_000:40_000], fin=False))
    client.writer.write(frame(0x0, text[40_000:]))
    assert await client.frame() == (0xA, b"between fragments")
    assert await client.frame() == (0x1, text)


async def test_forwarded_request_is_rewritten(
    relays: RelayFactory, router: Router, raw_clients: RawClients
) -> None:
    relay = await relays(router.port)
    client = await raw_clients(relay)
    client.writer.write(
        upgrade_head(
            extra="Sec-WebSocket-Extensions: permessage-deflate\r\n"
            "Sec-WebSocket-Protocol: wamp.2.cbor\r\nX-Forwarded-For: 10.9.9.9\r\n"
            "Origin: http://neighbour\r\n"
        )
    )
    assert await client.answer() == 101
    (head,) = router.heads
    assert head["Host"] == f"127.0.0.1:{router.port}"
    assert head["Sec-WebSocket-Key"] == KEY
    assert head["Sec-WebSocket-Protocol"] == "wamp.2.cbor"
    assert head["Origin"] == "http://neighbour"
    assert "Sec-WebSocket-Extensions" not in head  # so the router never compresses
    assert "X-Forwarded-For" not in head


@pytest.mark.parametrize(
    ("head", "status"),
    [
        pytest.param(upgrade_head("/other"), 404, id="other-path"),
        pytest.param(upgrade_head("/ws/../admin"), 404, id="dot-dot"),
        pytest.param(b"CONNECT other:22 HTTP/1.1\r\nHost: other:22\r\n\r\n", 403, id="connect"),
        pytest.param(upgrade_head("http://other/ws"), 403, id="absolute-uri"),
        pytest.param(upgrade_head("*"), 403, id="asterisk"),
        pytest.param(upgrade_head(method="POST"), 405, id="post"),
        pytest.param(upgrade_head(version="HTTP/1.0"), 400, id="http-1.0"),
        pytest.param(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="not-an-upgrade"),
        pytest.param(upgrade_head().replace(KEY.encode(), b"short"), 400, id="bad-key"),
        pytest.param(upgrade_head(extra=f"Sec-WebSocket-Key: {KEY}\r\n"), 400, id="two-keys"),
        pytest.param(upgrade_head(extra=" folded\r\n"), 400, id="folded-line"),
        pytest.param(upgrade_head(extra="X-Bad: \x01\r\n"), 400, id="control-char"),
        pytest.param(upgrade_head(extra="X-Name: caf\u00e9\r\n"), 400, id="not-ascii"),
        pytest.param(os.urandom(300) + b"\r\n\r\n", 400, id="garbage"),
        pytest.param(upgrade_head(extra="X-Pad: " + "a" * 9000 + "\r\n"), 431, id="oversized"),
        pytest.param(b"\x16\x03\x01" + b"\x00" * 9000, 431, id="tls-hello-flood"),
    ],
)
async def test_bad_handshakes_are_refused_without_touching_the_router(
    relays: RelayFactory, tripwire: Tripwire, raw_clients: RawClients, head: bytes, status: int
) -> None:
    relay = await relays(tripwire.port)
    client = await raw_clients(relay)
    client.writer.write(head)
    assert await client.answer() == status
    assert await client.rest() == b""
    assert relay.stats.refused_handshake == 1
    assert tripwire.connections == 0
    client.close()
    await wait_until(lambda: relay.stats.active == 0)


async def test_unfinished_head_times_out(
    relays: RelayFactory, tripwire: Tripwire, raw_clients: RawClients
) -> None:
    relay = await relays(tripwire.port, handshake_timeout_s=0.3)
    client = await raw_clients(relay)
    client.writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # and nothing more
    assert await client.answer() == 408
    assert await client.rest() == b""
    assert relay.stats.refused_handshake == 1
    assert tripwire.connections == 0


async def test_unreachable_router_gives_502(relays: RelayFactory, raw_clients: RawClients) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    relay = await relays(closed_port)
    client = await raw_clients(relay)
    client.writer.write(upgrade_head())
    assert await client.answer() == 502
    assert relay.stats.router_unreachable == 1


async def test_router_refusing_the_upgrade_gives_502(
    relays: RelayFactory, router: Router, raw_clients: RawClients
) -> None:
    relay = await relays(router.port, router_path="/not-the-router")
    client = await raw_clients(relay)
    client.writer.write(upgrade_head("/not-the-router"))
    assert await client.answer() == 502
    assert (relay.stats.router_unreachable, relay.stats.relayed) == (1, 0)


@pytest.mark.parametrize(
    ("bad_frame", "code"),
    [
        pytest.param(frame(0x1, b"plain", masked=False), 1002, id="unmasked"),
        pytest.param(frame(0x1, b"deflated?", rsv=0x40), 1002, id="rsv1"),
        pytest.param(frame(0x2, b"x" * 2000), 1009, id="over-max"),
        pytest.param(frame(0x2, length=1 << 62), 1009, id="64-bit-length"),
        pytest.param(frame(0x3, b"?"), 1002, id="reserved-opcode"),
        pytest.param(frame(0x9, b"p" * 126), 1002, id="long-ping"),
        pytest.param(frame(0x9, b"p", fin=False), 1002, id="fragmented-ping"),
        pytest.param(frame(0x0, b"orphan"), 1002, id="orphan-continuation"),
        pytest.param(frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002, id="interleaved"),
    ],
)
async def test_bad_frame_closes_only_its_connection(
    relays: RelayFactory,
    router: Router,
    raw_clients: RawClients,
    http: aiohttp.ClientSession,
    bad_frame: bytes,
    code: int,
) -> None:
    relay = await relays(router.port, max_frame_bytes=1024)
    async with http.ws_connect(ws_url(relay)) as good:
        assert await echoes(good, "before")
        bad = await raw_clients(relay, upgraded=True)
        bad.writer.write(bad_frame)
        opcode, payload = await bad.frame()
        assert (opcode, int.from_bytes(payload[:2])) == (0x8, code)
        assert await bad.rest() == b""
        assert relay.stats.closed_bad_frames == 1
        assert await echoes(good, "after")
    assert not any(
        isinstance(data, bytes) and data.startswith(b"x" * 100) for data in router.received
    )
    assert all(data in ("before", "after") for data in router.received)


async def test_full_relay_answers_503(
    relays: RelayFactory, router: Router, raw_clients: RawClients, http: aiohttp.ClientSession
) -> None:
    relay = await relays(router.port, max_connections=2)
    first = await http.ws_connect(ws_url(relay))
    async with http.ws_connect(ws_url(relay)) as second:
        extra = await raw_clients(relay)
        extra.writer.write(upgrade_head())
        assert await extra.answer() == 503
        assert relay.stats.refused_full == 1
        assert await echoes(second, "still served")
        await first.close()
        await wait_until(lambda: relay.stats.active == 1)
        async with http.ws_connect(ws_url(relay)) as third:
            assert await echoes(third, "a slot came free")
    assert len(router.heads) == 3


async def test_flood_is_dropped_unanswered(
    relays: RelayFactory,
    tripwire: Tripwire,
    raw_clients: RawClients,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(relay_module, "_LINGER_S", WAIT_S)  # refused ones stay a while
    relay = await relays(tripwire.port, max_connections=1)
    handshaking = await raw_clients(relay)
    handshaking.writer.write(b"GET /ws HTTP/1.1\r\n")
    await wait_until(lambda: relay.stats.active == 1)
    for _ in range(3):  # 4 tasks per connection: 1 being relayed, 3 being told 503
        refused = await raw_clients(relay)
        refused.writer.write(upgrade_head())
        assert await refused.answer() == 503
    dropped = await raw_clients(relay)
    dropped.writer.write(upgrade_head())
    assert await dropped.rest() == b""  # no answer at all
    assert relay.stats.refused_full == 4
    assert tripwire.connections == 0


async def test_rate_is_limited_per_connection(
    relays: RelayFactory, router: Router, http: aiohttp.ClientSession
) -> None:
    relay = await relays(router.port, rate_bytes_per_s=32_000)
    payload = os.urandom(64_000)
    async with http.ws_connect(ws_url(relay)) as ws:
        started = time.monotonic()
        await ws.send_bytes(payload)
        assert (await ws.receive(timeout=30)).data == payload
        elapsed = time.monotonic() - started
    # 64 kB up then 64 kB down at 32 kB/s, less two 8 kB bursts: about 3.5 s.
    assert elapsed >= 1.5


async def test_idle_connection_is_closed(
    relays: RelayFactory, router: Router, raw_clients: RawClients
) -> None:
    relay = await relays(router.port, idle_timeout_s=0.5)
    client = await raw_clients(relay, upgraded=True)
    client.writer.write(frame(0x1, b"one message, then silence"))
    assert await client.frame() == (0x1, b"one message, then silence")
    assert await client.rest() == b""
    assert relay.stats.closed_idle == 1
    client.close()
    await wait_until(lambda: relay.stats.active == 0)


async def test_close_ends_every_connection_and_task(
    relays: RelayFactory, router: Router, raw_clients: RawClients, http: aiohttp.ClientSession
) -> None:
    relay = await relays(router.port)
    ws = await http.ws_connect(ws_url(relay))
    assert await echoes(ws, "open")
    handshaking = await raw_clients(relay)
    handshaking.writer.write(b"GET /ws HTTP/1.1\r\n")
    await wait_until(lambda: relay.stats.active == 2)
    assert relay_tasks()
    async with asyncio.timeout(WAIT_S):
        await relay.close()
    assert relay_tasks() == []
    assert relay.stats.active == 0
    assert (await ws.receive(timeout=WAIT_S)).type in {
        aiohttp.WSMsgType.CLOSE,
        aiohttp.WSMsgType.CLOSED,
        aiohttp.WSMsgType.ERROR,
    }
    await ws.close()
    assert await handshaking.rest() == b""


async def test_refusals_are_logged_at_most_once_in_a_while(
    relays: RelayFactory,
    tripwire: Tripwire,
    raw_clients: RawClients,
    caplog: pytest.LogCaptureFixture,
) -> None:
    relay = await relays(tripwire.port)
    with caplog.at_level(logging.WARNING, logger="edgecloud_agent.uplink.relay"):
        for _ in range(5):
            client = await raw_clients(relay)
            client.writer.write(upgrade_head("/elsewhere"))
            assert await client.answer() == 404
    assert relay.stats.refused_handshake == 5
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


@pytest.mark.parametrize(
    "setting", ["relay_max_connections", "relay_rate_bytes_per_s", "relay_idle_timeout_s"]
)
def test_relay_limits_that_are_not_positive_are_refused_at_start(setting: str) -> None:
    from pydantic import ValidationError

    from edgecloud_agent.settings import AgentSettings

    with pytest.raises(ValidationError, match=setting):
        AgentSettings(relay_listen="[::1]:8099", **{setting: 0})
