"""A hostile border router: the neighbour relaying a node's uplink over the mesh reads,
alters or impersonates. The router serves TLS only (a certificate for ``localhost`` and
127.0.0.1 from an authority made here); a real agent's only uplink is
``lowpan=wss://localhost:<router>/ws via 127.0.0.1:<relay>``, so its TCP connection goes to
the relay while TLS and the WebSocket speak to the router by name. The relays are the
agent's own :class:`Relay` (the honest one) and test-side relays on 127.0.0.1 that record
every byte, flip one, or end TLS themselves with a certificate of their own.
"""

import asyncio
import ssl
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import httpx
import pytest

from edgecloud_agent.uplink.relay import Relay
from tests.conftest import eventually
from tests.security.test_tls import gateway_client, operator_token, tls_stack, trusting
from tests.support.agents import AgentFactory, AgentHandle
from tests.support.stack import Stack
from tests.support.tls import make_certificates, signed_certificate

__all__ = ["tls_stack"]  # borrowed from the suite that owns it

pytestmark = pytest.mark.stack

# The relays here send no beacons (uplink/beacon.py): the hop is not watched for them.
MESH_ENV = {
    "AGENT_LOWPAN_HEARTBEAT_INTERVAL_S": "1",
    "AGENT_LOWPAN_OPEN_TIMEOUT_S": "3",
    "AGENT_LOWPAN_SILENCE_S": "0",
}
SECRET_LOCATION = "vault-7 behind the red door"


@pytest.fixture(scope="module")
def stack(tls_stack: Stack) -> Stack:
    """The router (wss:// only) and the two services a node's enrolment and heartbeats need:
    the stack the agents, ``enrol`` and ``api`` fixtures use here."""
    return tls_stack


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {await operator_token(stack)}"}
    async with gateway_client(stack, headers=headers) as client:
        yield client


def through(agents: AgentFactory, stack: Stack, relay_port: int, token: str) -> AgentHandle:
    """An agent whose one uplink is the router reached via the relay at ``relay_port``."""
    uplink = f"lowpan=wss://localhost:{stack.router_port}/ws via 127.0.0.1:{relay_port}"
    return agents.start(
        token=token,
        location=SECRET_LOCATION,
        extra_env={"AGENT_UPLINKS": uplink, **MESH_ENV},
    )


async def on_the_mesh(api: httpx.AsyncClient, agent: AgentHandle) -> bool:
    answer = await api.get(f"/api/v1/devices/{agent.key}")
    device = answer.json() if answer.status_code == 200 else {}
    return device.get("status") == "degraded" and device.get("link") == "lowpan"


class TestSideRelay(ABC):
    """A relaying neighbour of the test's on 127.0.0.1: each connection is served by
    :meth:`serve` in a task of its own, all ended with the block."""

    __test__ = False  # pytest: a class named Test... that is not a test

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self.serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @abstractmethod
    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One neighbour's connection, as this relay treats it (each subclass its own)."""


@dataclass
class Pipe:
    """One relayed connection of a :class:`Tap`: bytes each way, as they passed."""

    up: bytearray = field(default_factory=bytearray)
    down: bytearray = field(default_factory=bytearray)
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class Tap(TestSideRelay):
    """A relaying neighbour that keeps every byte it passes to and from the router and,
    once armed, flips one bit of the next chunk going one way."""

    def __init__(self, router_port: int) -> None:
        super().__init__()
        self.router_port = router_port
        self.pipes: list[Pipe] = []
        self.flip: str | None = None
        """``"up"`` or ``"down"``: the direction of the next chunk to alter (then None)."""
        self.flipped_in: Pipe | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pipe = Pipe()
        self.pipes.append(pipe)
        router_reader, router_writer = await asyncio.open_connection("127.0.0.1", self.router_port)
        try:
            async with asyncio.TaskGroup() as tasks:
                ways = [
                    tasks.create_task(self._way(pipe, "up", reader, router_writer)),
                    tasks.create_task(self._way(pipe, "down", router_reader, writer)),
                ]
                await asyncio.wait(ways, return_when=asyncio.FIRST_COMPLETED)
                for way in ways:
                    way.cancel()
        finally:
            for end in (writer, router_writer):
                end.transport.abort()
            pipe.closed.set()

    async def _way(
        self, pipe: Pipe, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        kept = pipe.up if name == "up" else pipe.down
        while chunk := await reader.read(4096):
            if self.flip == name and len(chunk) > 16:
                self.flip, self.flipped_in = None, pipe
                middle = len(chunk) // 2
                chunk = chunk[:middle] + bytes([chunk[middle] ^ 0x01]) + chunk[middle + 1 :]
            kept += chunk
            writer.write(chunk)
            await writer.drain()


async def test_a_neighbour_joins_over_tls_through_the_relay(
    stack: Stack, api: httpx.AsyncClient, agents: AgentFactory, enrol
) -> None:
    """The agent's own relay, forwarding to the router's wss:// port: the neighbour enrols
    and beats through it, and the relay carried its bytes."""
    async with Relay(
        listen_host="127.0.0.1",
        listen_port=0,
        router_host="127.0.0.1",
        router_port=stack.router_port,
    ) as relay:
        agent = through(agents, stack, relay.port, await enrol())
        await eventually(lambda: on_the_mesh(api, agent), timeout=30)
        assert relay.stats.relayed >= 1
        assert relay.stats.bytes_up > 1000
        assert relay.stats.bytes_down > 1000


async def test_a_recording_relay_reads_nothing(
    stack: Stack, api: httpx.AsyncClient, agents: AgentFactory, enrol
) -> None:
    """Everything the relaying node saw of a whole session (the enrolment, logins,
    heartbeats) holds none of its secrets, names or even the WebSocket handshake."""
    token = await enrol()
    async with Tap(stack.router_port) as tap:
        agent = through(agents, stack, tap.port, token)
        await eventually(lambda: on_the_mesh(api, agent), timeout=30)
        beats = (await api.get(f"/api/v1/devices/{agent.key}")).json()["heartbeats"]
        await eventually(lambda: _more_beats(api, agent, beats + 3), timeout=20, interval=0.2)
    seen = b"".join(bytes(pipe.up) + bytes(pipe.down) for pipe in tap.pipes)
    assert len(seen) > 5000
    assert all(pipe.up.startswith(b"\x16\x03") for pipe in tap.pipes)  # TLS handshakes
    for plaintext in (
        token,
        agent.key,
        agent.hostname,
        SECRET_LOCATION,
        "edge.registry",
        "Sec-WebSocket",
        "GET /ws",
        "wamp.2.cbor",
    ):
        assert plaintext.encode() not in seen, plaintext


async def _more_beats(api: httpx.AsyncClient, agent: AgentHandle, count: int) -> bool:
    return (await api.get(f"/api/v1/devices/{agent.key}")).json()["heartbeats"] >= count


@pytest.mark.parametrize("direction", ["down", "up"])
async def test_a_flipped_byte_ends_the_connection_and_the_neighbour_reconnects(
    stack: Stack, api: httpx.AsyncClient, agents: AgentFactory, enrol, direction: str
) -> None:
    """One bit changed on its way (to the neighbour, or to the router) mid-session: the side
    that gets it refuses the record and ends the connection, so nothing altered is taken;
    the neighbour comes back over a new connection."""
    async with Tap(stack.router_port) as tap:
        agent = through(agents, stack, tap.port, await enrol())
        await eventually(lambda: on_the_mesh(api, agent), timeout=30)
        joined = len(tap.pipes)
        tap.flip = direction
        flipped = await eventually(lambda: _flipped(tap), timeout=20, interval=0.05)
        async with asyncio.timeout(20):
            await flipped.closed.wait()
        await eventually(lambda: _reconnected(api, agent, tap, joined), timeout=30, interval=0.2)


async def _flipped(tap: Tap) -> Pipe | None:
    return tap.flipped_in


async def _reconnected(api: httpx.AsyncClient, agent: AgentHandle, tap: Tap, before: int) -> bool:
    return len(tap.pipes) > before and await on_the_mesh(api, agent)


class Impostor(TestSideRelay):
    """A relaying neighbour that ends the TLS itself with a certificate of its own and, if
    the neighbour accepts it, goes on to the router over TLS of its own, reading it all."""

    def __init__(self, stack: Stack, certfile: Path, keyfile: Path) -> None:
        super().__init__()
        self.stack = stack
        self.serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.serving.load_cert_chain(certfile, keyfile)
        self.refused = 0
        self.accepted = 0
        self.plaintext = bytearray()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await writer.start_tls(self.serving)
        except (ssl.SSLError, OSError):
            self.refused += 1
            writer.transport.abort()
            return
        self.accepted += 1
        router_reader, router_writer = await asyncio.open_connection(
            "127.0.0.1",
            self.stack.router_port,
            ssl=trusting(self.stack),
            server_hostname="localhost",
        )

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while chunk := await source.read(4096):
                self.plaintext += chunk
                sink.write(chunk)
                await sink.drain()

        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(copy(reader, router_writer))
                tasks.create_task(copy(router_reader, writer))
        except* (OSError, ssl.SSLError):
            pass
        finally:
            writer.transport.abort()
            router_writer.transport.abort()


@pytest.mark.parametrize("issuer", ["another authority", "the router's authority"])
async def test_a_relay_with_a_certificate_of_its_own_is_refused(
    stack: Stack, api: httpx.AsyncClient, agents: AgentFactory, enrol, tmp_path: Path, issuer: str
) -> None:
    """A relay ending TLS itself: with a certificate for the router's names from an
    authority the node does not trust, or with one the router's own authority gave it for
    its own address (127.0.0.1, where the neighbour connects). The neighbour refuses the
    handshake every time; it never enrols, and the impostor reads nothing."""
    assert stack.tls is not None
    if issuer == "another authority":
        own = make_certificates(tmp_path / "impostor", "impostor CA", hosts=["localhost"])
    else:
        own = signed_certificate(stack.tls.ca_file, tmp_path / "impostor", hosts=["127.0.0.1"])
    async with Impostor(stack, own.certfile, own.keyfile) as impostor:
        agent = through(agents, stack, impostor.port, await enrol())
        await eventually(lambda: _refused_twice(impostor), timeout=30, interval=0.1)
        assert impostor.accepted == 0
        assert impostor.plaintext == b""
        assert (await api.get(f"/api/v1/devices/{agent.key}")).status_code == 404


async def _refused_twice(impostor: Impostor) -> bool:
    return impostor.refused >= 2 or impostor.accepted > 0
