"""The border-router relay between real sockets on 127.0.0.1.

Behind the relay runs either a real WebSocket echo "router" (aiohttp.web, path /ws, plain
or on TLS with a certificate for ``localhost`` from an authority made here), a recorder (a
bare TCP server keeping every byte it gets), or a tripwire (one that only counts the
connections it gets, for the cases where the router must see nothing at all). Neighbours
are aiohttp WebSocket clients or raw TCP clients. Timing bounds are lower bounds only, with
a wide margin.
"""

import asyncio
import logging
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from edgecloud_agent.settings import AgentSettings
from edgecloud_agent.uplink.relay import Relay, host_port, router_address
from tests.support.tls import make_certificates

WAIT_S = 10.0  # generous deadline for anything that should happen at once


@dataclass
class Router:
    port: int = 0
    received: list[str | bytes] = field(default_factory=list)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The authority's PEM file; the server's files beside it (for ``localhost`` only)."""
    return make_certificates(tmp_path_factory.mktemp("tls"), hosts=["localhost"]).ca_file


async def echo_router(tls: ssl.SSLContext | None) -> AsyncIterator[Router]:
    seen = Router()

    async def echo(request: web.Request) -> web.WebSocketResponse:
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
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    seen.port = runner.addresses[0][1]
    yield seen
    await runner.cleanup()


@pytest.fixture
async def router() -> AsyncIterator[Router]:
    """A WebSocket echo server on 127.0.0.1, path /ws, recording what reaches it."""
    async for seen in echo_router(None):
        yield seen


@pytest.fixture
async def tls_router(certificates: Path) -> AsyncIterator[Router]:
    """The same on TLS, its certificate naming ``localhost`` (not 127.0.0.1)."""
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(
        certificates.parent / "server.pem", certificates.parent / "server-key.pem"
    )
    async for seen in echo_router(serving):
        yield seen


@dataclass
class Recorder:
    port: int = 0
    connections: int = 0
    received: bytearray = field(default_factory=bytearray)


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    """A stand-in router that keeps every byte it gets and answers nothing."""
    kept = Recorder()
    writers: list[asyncio.StreamWriter] = []

    async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        kept.connections += 1
        writers.append(writer)
        while chunk := await reader.read(65536):
            kept.received += chunk

    server = await asyncio.start_server(keep, "127.0.0.1", 0)
    kept.port = server.sockets[0].getsockname()[1]
    yield kept
    for writer in writers:
        writer.transport.abort()
    server.close()
    await server.wait_closed()


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


@dataclass
class RawClient:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

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


RawClients = Callable[[Relay], Awaitable[RawClient]]


@pytest.fixture
async def raw_clients() -> AsyncIterator[RawClients]:
    """Raw TCP neighbours of a relay, aborted after."""
    opened: list[RawClient] = []

    async def connect(relay: Relay) -> RawClient:
        opened.append(RawClient(*await asyncio.open_connection("127.0.0.1", relay.port)))
        return opened[-1]

    yield connect
    for client in opened:
        client.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def ws_url(relay: Relay, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{relay.port}/ws"


async def echoes(ws: aiohttp.ClientWebSocketResponse, data: str | bytes) -> bool:
    await (ws.send_str(data) if isinstance(data, str) else ws.send_bytes(data))
    return bool((await ws.receive(timeout=WAIT_S)).data == data)


async def wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not condition():  # noqa: ASYNC110  # polling counters the relay keeps
            await asyncio.sleep(0.01)


def connection_tasks() -> list[asyncio.Task[Any]]:
    """The relay's tasks serving a connection (each pumps through two more while relaying)."""
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("relay ") and not t.done()]


def test_addresses_come_from_the_settings() -> None:
    assert router_address("ws://10.0.0.1:8080/ws") == ("10.0.0.1", 8080)
    assert router_address("ws://[fd00::1]/ws?x=1") == ("fd00::1", 80)
    assert router_address("wss://router.example/ws") == ("router.example", 443)
    with pytest.raises(ValueError, match="ws:// or wss://"):
        router_address("http://router.example/ws")
    assert host_port("[::]:8099") == ("::", 8099)
    assert host_port("[fd00:1::2]:8099") == ("fd00:1::2", 8099)
    assert host_port("10.1.0.2:8099") == ("10.1.0.2", 8099)
    for wrong in ("[::]", "host:port", "x@host:1", "host:1/path", ":8099"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            host_port(wrong)


def test_a_lowpan_uplink_is_the_router_url_reached_via_a_relay() -> None:
    settings = AgentSettings(
        uplinks="wan=wss://cloud.example/ws, lowpan=wss://cloud.example/ws via [fd00:1::2]:8099"
    )
    wan, lowpan = settings.transports
    assert (wan.url, wan.via, wan.address) == (
        "wss://cloud.example/ws",
        None,
        ("cloud.example", 443),
    )
    assert (lowpan.link, lowpan.url) == ("lowpan", "wss://cloud.example/ws")
    assert lowpan.address == lowpan.via == ("fd00:1::2", 8099)
    # The older form, the relay's own address as a ws:// URL, still means what it meant.
    (old,) = AgentSettings(uplinks="lowpan=ws://[fd00:1::2]:8099/ws").transports
    assert (old.via, old.address) == (None, ("fd00:1::2", 8099))
    for wrong in (
        "lowpan=wss://cloud/ws via",
        "lowpan=wss://cloud/ws through [fd00::2]:1",
        "lowpan=wss://cloud/ws via fd00::2",
        "lowpan=wss://cloud/ws via [fd00::2]:1 extra",
    ):
        with pytest.raises(ValueError, match=r"uplinks|HOST:PORT"):
            AgentSettings(uplinks=wrong)


def test_a_relay_may_forward_to_a_router_on_tls() -> None:
    settings = AgentSettings(relay_listen="[::]:8099", router_url="wss://cloud.example/ws")
    assert router_address(settings.router_url) == ("cloud.example", 443)
    with pytest.raises(ValueError, match="ws:// or wss://"):
        AgentSettings(relay_listen="[::]:8099", router_url="tcp://cloud.example:80")


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
    assert (stats.accepted, stats.relayed, stats.refused_full) == (1, 1, 0)
    assert stats.bytes_up > 60_000
    assert stats.bytes_down > 60_000


async def test_tls_passes_through_and_ends_at_the_router(
    relays: RelayFactory, tls_router: Router, http: aiohttp.ClientSession, certificates: Path
) -> None:
    """A neighbour's TLS is the router's: checked against the router's name (``localhost``)
    while the connection goes to the relay's address, which the certificate does not name."""
    relay = await relays(tls_router.port, rate_bytes_per_s=10_000_000)
    trusting = ssl.create_default_context(cafile=str(certificates))
    async with http.ws_connect(
        ws_url(relay, "https"), ssl=trusting, server_hostname="localhost"
    ) as ws:
        assert await echoes(ws, "through the relay, encrypted")
    assert tls_router.received == ["through the relay, encrypted"]
    # Checked against the address the connection goes to, the same certificate is refused.
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await http.ws_connect(ws_url(relay, "https"), ssl=trusting)


async def test_nothing_the_neighbour_sends_picks_the_destination(
    relays: RelayFactory, recorder: Recorder, tripwire: Tripwire, raw_clients: RawClients
) -> None:
    """Proxy requests, a Host naming another port, anything: it all goes, unread, to the one
    router address, and no other address is ever dialled."""
    relay = await relays(recorder.port)
    asks = (
        f"CONNECT 127.0.0.1:{tripwire.port} HTTP/1.1\r\nHost: 127.0.0.1:{tripwire.port}\r\n\r\n"
        f"GET http://127.0.0.1:{tripwire.port}/ws HTTP/1.1\r\n"
        f"Host: localhost:{tripwire.port}\r\n\r\n"
    ).encode() + os.urandom(300)
    client = await raw_clients(relay)
    client.writer.write(asks)
    await wait_until(lambda: bytes(recorder.received) == asks)
    assert (recorder.connections, tripwire.connections) == (1, 0)


async def test_a_silent_neighbour_is_closed_and_the_router_never_dialled(
    relays: RelayFactory, tripwire: Tripwire, raw_clients: RawClients
) -> None:
    relay = await relays(tripwire.port, handshake_timeout_s=0.3)
    client = await raw_clients(relay)
    assert await client.rest() == b""
    assert relay.stats.refused_silent == 1
    assert tripwire.connections == 0
    await wait_until(lambda: relay.stats.active == 0)


async def test_an_unreachable_router_closes_the_neighbour(
    relays: RelayFactory, raw_clients: RawClients
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    relay = await relays(closed_port)
    client = await raw_clients(relay)
    client.writer.write(b"\x16\x03\x01 a client hello, say")
    assert await client.rest() == b""
    assert (relay.stats.router_unreachable, relay.stats.relayed) == (1, 0)


async def test_a_full_relay_drops_more_at_once(
    relays: RelayFactory, router: Router, raw_clients: RawClients, http: aiohttp.ClientSession
) -> None:
    relay = await relays(router.port, max_connections=2)
    first = await http.ws_connect(ws_url(relay))
    async with http.ws_connect(ws_url(relay)) as second:
        extra = await raw_clients(relay)
        assert await extra.rest() == b""
        assert relay.stats.refused_full == 1
        assert await echoes(second, "still served")
        await first.close()
        await wait_until(lambda: relay.stats.active == 1)
        async with http.ws_connect(ws_url(relay)) as third:
            assert await echoes(third, "a slot came free")
    assert relay.stats.accepted == 3


async def test_a_flood_costs_no_tasks_and_never_reaches_the_router(
    relays: RelayFactory, recorder: Recorder, raw_clients: RawClients
) -> None:
    relay = await relays(recorder.port, max_connections=2)
    held = [await raw_clients(relay) for _ in range(2)]
    for client in held:
        client.writer.write(b"hello")
    await wait_until(lambda: recorder.connections == 2)
    flood = [await raw_clients(relay) for _ in range(50)]
    for client in flood:
        client.writer.write(b"let me in")
    for client in flood:
        assert await client.rest() == b""
    assert len(connection_tasks()) == 2
    assert relay.stats.refused_full == 50
    assert recorder.connections == 2
    assert bytes(recorder.received) == b"hello" * 2


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
    relays: RelayFactory, router: Router, http: aiohttp.ClientSession
) -> None:
    relay = await relays(router.port, idle_timeout_s=0.5)
    async with http.ws_connect(ws_url(relay), autoping=False) as ws:
        assert await echoes(ws, "one message, then silence")
        closing = await ws.receive(timeout=WAIT_S)
    assert closing.type in {
        aiohttp.WSMsgType.CLOSE,
        aiohttp.WSMsgType.CLOSED,
        aiohttp.WSMsgType.ERROR,
    }
    assert relay.stats.closed_idle == 1
    await wait_until(lambda: relay.stats.active == 0)


async def test_close_ends_every_connection_and_task(
    relays: RelayFactory, router: Router, raw_clients: RawClients, http: aiohttp.ClientSession
) -> None:
    relay = await relays(router.port)
    ws = await http.ws_connect(ws_url(relay))
    assert await echoes(ws, "open")
    silent = await raw_clients(relay)
    await wait_until(lambda: relay.stats.active == 2)
    async with asyncio.timeout(WAIT_S):
        await relay.close()
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("relay")] == []
    assert relay.stats.active == 0
    assert (await ws.receive(timeout=WAIT_S)).type in {
        aiohttp.WSMsgType.CLOSE,
        aiohttp.WSMsgType.CLOSED,
        aiohttp.WSMsgType.ERROR,
    }
    await ws.close()
    assert await silent.rest() == b""


async def test_refusals_are_logged_at_most_once_in_a_while(
    relays: RelayFactory,
    recorder: Recorder,
    raw_clients: RawClients,
    caplog: pytest.LogCaptureFixture,
) -> None:
    relay = await relays(recorder.port, max_connections=1)
    held = await raw_clients(relay)
    held.writer.write(b"hello")
    await wait_until(lambda: recorder.connections == 1)
    with caplog.at_level(logging.WARNING, logger="edgecloud_agent.uplink.relay"):
        for _ in range(5):
            assert await (await raw_clients(relay)).rest() == b""
    assert relay.stats.refused_full == 5
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


@pytest.mark.parametrize(
    "setting", ["relay_max_connections", "relay_rate_bytes_per_s", "relay_idle_timeout_s"]
)
def test_relay_limits_that_are_not_positive_are_refused_at_start(setting: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=setting):
        AgentSettings(relay_listen="[::1]:8099", **{setting: 0})
