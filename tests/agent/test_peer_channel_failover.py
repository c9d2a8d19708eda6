"""The peer channel over a broker at two addresses (its node's WAN, then its mesh): the first
dies mid-conversation, silently, and the channel carries on over the second.

The machine's Mosquitto stands for the target's broker; its "WAN address" is a TCP relay in
front of it that can be made to swallow every byte both ways (a cut that sends no RST, as
the testbed's cut does), its "mesh address" another such relay, which may refuse for a while
(a mesh route still coming up; the broker meanwhile announces the source's death).
"""

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import suppress

import aiomqtt
import pytest

from edgecloud_agent.peers import wire
from edgecloud_agent.peers.channel import PeerChannel, PeerTimeout

BROKER_HOST, BROKER_PORT = "127.0.0.1", 1883
BROKER = f"mqtt://{BROKER_HOST}:{BROKER_PORT}"
SOURCE, TARGET = "node-source", "node-target"
KEEPALIVE_S = 1
"""The source's: the broker takes it for gone (and sends its last will) after 1.5 s."""
WILL_GRACE_S = 6.0
WAIT_S = 30.0


class CuttableLink:
    """A TCP relay to the broker that, once cut, swallows everything both ways; while it
    ``refuses``, it drops every new connection at once."""

    def __init__(self) -> None:
        self.cut = False
        self.refuses = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"mqtt://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> "CuttableLink":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.transport.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuses:
            writer.transport.abort()
            return
        broker_reader, broker_writer = await asyncio.open_connection(BROKER_HOST, BROKER_PORT)
        self._writers += [writer, broker_writer]
        for source, sink in ((reader, broker_writer), (broker_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with suppress(OSError):
            while data := await source.read(65536):
                if not self.cut:
                    sink.write(data)
                    await sink.drain()


@pytest.fixture
async def wan() -> AsyncIterator[CuttableLink]:
    async with CuttableLink() as link:
        yield link


@pytest.fixture
async def mesh() -> AsyncIterator[CuttableLink]:
    async with CuttableLink() as link:
        yield link


@pytest.fixture
def topic() -> str:
    return f"edgecloud/peer/test-{secrets.token_hex(6)}"


@pytest.fixture
async def channels(
    wan: CuttableLink, mesh: CuttableLink, topic: str
) -> AsyncIterator[tuple[PeerChannel, PeerChannel]]:
    """(source, target): the source reaches the broker by the WAN first, then the mesh; the
    target is on its own broker, holding a last will back as a migration's target does."""
    key = secrets.token_bytes(wire.KEY_BYTES)
    target = PeerChannel(me=TARGET, key=key, broker_url=BROKER, will_grace_s=WILL_GRACE_S)
    source = PeerChannel(
        me=SOURCE,
        key=key,
        broker_url=[wan.url, mesh.url],
        keepalive_s=KEEPALIVE_S,
        broker_timeout=5,
        chunk_bytes=8192,
        last_will=("failed", {"code": "peer_lost", "message": f"{SOURCE} went away"}),
    )
    await target.connect(SOURCE, topic)
    await source.connect(TARGET, topic)
    yield source, target
    for channel in (source, target):
        await channel.disconnect(end_session=True)


async def test_a_file_goes_on_over_the_mesh_when_the_wan_dies_mid_transfer(
    wan: CuttableLink, channels: tuple[PeerChannel, PeerChannel]
) -> None:
    source, target = channels
    assert source.on_first_address
    await source.send("configuration", {})
    assert (await target.get_message(SOURCE, timeout=WAIT_S)).kind == "configuration"
    data = os.urandom(600_000)
    receiving = asyncio.create_task(target.receive_file("app", timeout=WAIT_S))

    def cut_midway(sent: int, size: int) -> None:
        if sent >= size // 3:
            wan.cut = True

    await source.send_file("app", data, progress=cut_midway)
    received = await receiving
    assert received.data == data
    assert source.failovers == 1
    assert not source.on_first_address
    # Both ways, in order, numbered on from before the cut.
    await target.send("activated", {"docker_id": "x"})
    assert (await source.get_message(TARGET, timeout=WAIT_S)).kind == "activated"
    await source.send("done", {})
    assert (await target.get_message(SOURCE, timeout=WAIT_S)).kind == "done"
    assert set(target.refused) <= {"repeat"}


async def test_an_idle_source_that_falls_over_voids_its_last_will(
    wan: CuttableLink,
    mesh: CuttableLink,
    topic: str,
    channels: tuple[PeerChannel, PeerChannel],
) -> None:
    """Cut while it waits for the target: the broker announces its death when the WAN
    connection goes quiet, before the mesh lets it back; it says it is back, so the
    target, holding the will within its grace, never hears of it."""
    source, target = channels
    await source.send("configuration", {})
    assert (await target.get_message(SOURCE, timeout=WAIT_S)).kind == "configuration"
    async with aiomqtt.Client(BROKER_HOST, BROKER_PORT) as watcher:
        await watcher.subscribe(f"{topic}/{SOURCE}", qos=2)
        wan.cut = mesh.refuses = True
        # The source sends nothing now: what the broker publishes in its name is its will.
        async with asyncio.timeout(WAIT_S):
            await anext(aiter(watcher.messages))
    mesh.refuses = False
    with pytest.raises(PeerTimeout):
        await target.receive_single(timeout=WILL_GRACE_S + 3)
    assert source.failovers == 1
    await target.send("configuration_ok", {})
    assert (await source.get_message(TARGET, timeout=WAIT_S)).kind == "configuration_ok"


async def test_a_source_that_does_not_come_back_is_announced_after_the_grace(
    wan: CuttableLink,
) -> None:
    key = secrets.token_bytes(wire.KEY_BYTES)
    topic = f"edgecloud/peer/test-{secrets.token_hex(6)}"
    target = PeerChannel(me=TARGET, key=key, broker_url=BROKER, will_grace_s=WILL_GRACE_S)
    # Its WAN only: once that is cut, only its last will speaks for it.
    source = PeerChannel(
        me=SOURCE,
        key=key,
        broker_url=[wan.url],
        keepalive_s=KEEPALIVE_S,
        last_will=("failed", {"code": "peer_lost", "message": f"{SOURCE} went away"}),
    )
    try:
        await target.connect(SOURCE, topic)
        await source.connect(TARGET, topic)
        await source.send("configuration", {})
        assert (await target.get_message(SOURCE, timeout=WAIT_S)).kind == "configuration"
        wan.cut = True
        cut_at = asyncio.get_running_loop().time()
        will = await target.get_message(SOURCE, timeout=WAIT_S)
        assert (will.kind, will.body["code"]) == ("failed", "peer_lost")
        assert asyncio.get_running_loop().time() - cut_at >= WILL_GRACE_S
    finally:
        await source.disconnect()
        await target.disconnect(end_session=True)
