"""The peer channel against the machine's Mosquitto on 127.0.0.1:1883, and its wire format.

Every test talks under a topic of its own, with a key of its own; the channels' persistent
sessions are ended afterwards so the broker keeps nothing. Hostile or reordered traffic is
published raw, next to a real sender, with a plain aiomqtt client: sealed with the key as
the peer would (a compromised peer, or a test of the file transfer), or not (anyone else).
"""

import asyncio
import hashlib
import os
import random
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import cbor2
import pytest

from edgecloud_agent.peers import wire
from edgecloud_agent.peers.channel import (
    PeerChannel,
    PeerMessage,
    PeerTimeout,
    PeerUnavailable,
    ProtocolError,
    TransferFailed,
)
from edgecloud_agent.peers.wire import FileAssembler, FileChunk, FileEnd, FileHead

BROKER = "mqtt://127.0.0.1:1883"
WAIT_S = 10.0  # a deadline for what should arrive at once
SOURCE, TARGET = "node-source", "node-target"

OpenChannel = Callable[..., Awaitable[PeerChannel]]


@pytest.fixture
def topic() -> str:
    return f"edgecloud/peer/test-{secrets.token_hex(6)}"


@pytest.fixture
def key() -> bytes:
    """The migration's key, as the scheduler gives it to both sides."""
    return secrets.token_bytes(wire.KEY_BYTES)


@pytest.fixture
async def open_channel(topic: str, key: bytes) -> AsyncIterator[OpenChannel]:
    """Connected channels under ``topic``; disconnected and their sessions ended afterwards."""
    made: list[PeerChannel] = []

    async def make(me: str, peer: str, **options: Any) -> PeerChannel:
        channel = PeerChannel(me=me, broker_url=BROKER, **{"key": key, **options})
        made.append(channel)
        await channel.connect(peer, topic)
        return channel

    yield make
    for channel in made:
        await channel.disconnect(end_session=True)


@pytest.fixture
async def pair(open_channel: OpenChannel) -> tuple[PeerChannel, PeerChannel]:
    """(source, target), both subscribed before either sends."""
    target = await open_channel(TARGET, SOURCE)
    source = await open_channel(SOURCE, TARGET)
    return source, target


Draft = tuple[str, dict[str, Any]]
"""A message to publish: numbered and sealed when it is published, in publishing order."""


class RawSender:
    """Publishes exactly the messages a test wants, as if it were the source (which holds
    the key): drafts are numbered and sealed as they go out, bytes go out as they are."""

    def __init__(self, client: aiomqtt.Client, topic: str, key: bytes) -> None:
        self._client = client
        self.topic = f"{topic}/{SOURCE}"
        self.key = key
        self.instance = secrets.token_bytes(wire.INSTANCE_BYTES)
        self.seq = 0

    def envelope(self, kind: str, body: dict[str, Any]) -> Draft:
        return kind, body

    def seal(self, kind: str, body: dict[str, Any]) -> bytes:
        """The next message, sealed: publish it once, twice, or not at all."""
        payload = wire.encode_message(
            key=self.key, topic=self.topic, instance=self.instance, seq=self.seq,
            kind=kind, body=body,
        )  # fmt: skip
        self.seq += 1
        return payload

    def restart(self) -> None:
        """A sender instance of its own from now on (an agent that started again)."""
        self.instance, self.seq = secrets.token_bytes(wire.INSTANCE_BYTES), 0

    async def publish(self, *messages: Draft | bytes) -> None:
        for message in messages:
            payload = message if isinstance(message, bytes) else self.seal(*message)
            await self._client.publish(self.topic, payload, qos=2)


@pytest.fixture
async def raw(topic: str, key: bytes) -> AsyncIterator[RawSender]:
    async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"raw-{secrets.token_hex(6)}") as c:
        yield RawSender(c, topic, key)


def file_messages(
    sender: RawSender, data: bytes, *, chunk_bytes: int, name: str = "app"
) -> tuple[Draft, list[Draft], Draft]:
    """The head, chunk and trailer payloads of ``data``."""
    transfer = secrets.token_bytes(wire.TRANSFER_ID_BYTES)
    head = sender.envelope(wire.FILE_HEAD, FileHead(transfer, name, chunk_bytes, len(data)).body())
    chunks = [
        sender.envelope(
            wire.FILE_CHUNK, FileChunk(transfer, i, data[start : start + chunk_bytes]).body()
        )
        for i, start in enumerate(range(0, len(data), chunk_bytes))
    ]
    digest = hashlib.sha256(data).digest()
    end = sender.envelope(wire.FILE_END, FileEnd(transfer, len(data), len(chunks), digest).body())
    return head, chunks, end


async def test_control_messages_go_both_ways_in_order(
    pair: tuple[PeerChannel, PeerChannel],
) -> None:
    source, target = pair
    for n in range(20):
        await source.send("step", {"n": n, "blob": b"\x00\xff", "nested": {"list": [1, None]}})
    received = [await target.get_message(SOURCE, kind="step", timeout=WAIT_S) for _ in range(20)]
    assert [m.body["n"] for m in received] == list(range(20))
    assert {m.src for m in received} == {SOURCE}
    assert received[0].body["blob"] == b"\x00\xff"
    assert [m.seq for m in received] == sorted(m.seq for m in received)

    await target.send("answer", {"ok": True})
    answer = await source.get_message(TARGET, timeout=WAIT_S)
    assert (answer.src, answer.kind, answer.body) == (TARGET, "answer", {"ok": True})


async def test_an_unexpected_kind_is_a_protocol_error(
    pair: tuple[PeerChannel, PeerChannel],
) -> None:
    source, target = pair
    await source.send("hello", {})
    await source.send("failed", {"code": "no_room"})
    assert (await target.get_message(SOURCE, kind="hello", timeout=WAIT_S)).kind == "hello"
    with pytest.raises(ProtocolError) as caught:
        await target.get_message(SOURCE, kind="ready", timeout=WAIT_S)
    assert caught.value.received.body == {"code": "no_room"}
    assert caught.value.expected == "ready"


async def test_nothing_in_time_is_a_timeout_and_a_stranger_a_mistake(
    pair: tuple[PeerChannel, PeerChannel],
) -> None:
    _, target = pair
    with pytest.raises(PeerTimeout):
        await target.get_message(SOURCE, timeout=0.05)
    with pytest.raises(TimeoutError):  # callers may treat it as any timeout
        await target.receive_single(timeout=0.05)
    with pytest.raises(ValueError, match="not 'someone-else'"):
        await target.get_message("someone-else", timeout=WAIT_S)


async def test_receive_single_and_receive_queue(pair: tuple[PeerChannel, PeerChannel]) -> None:
    source, target = pair
    for n in range(5):
        await source.send("tick", {"n": n})
    first = await target.receive_single(timeout=WAIT_S)
    rest: list[PeerMessage] = []
    async with asyncio.timeout(WAIT_S):
        async for message in target.receive_queue():
            rest.append(message)
            if len(rest) == 4:
                break
    assert [m.body["n"] for m in [first, *rest]] == [0, 1, 2, 3, 4]


async def test_send_refuses_what_the_receiver_would_drop(
    pair: tuple[PeerChannel, PeerChannel],
) -> None:
    source, _ = pair
    with pytest.raises(ValueError, match="file transfer's"):
        await source.send(wire.FILE_CHUNK, {})
    with pytest.raises(ValueError, match="kind"):
        await source.send("Bad Kind", {})
    with pytest.raises(ValueError, match="set"):
        await source.send("x", {"tags": {1, 2}})
    with pytest.raises(ValueError, match="over"):
        await source.send("x", {"big": b"x" * (wire.MAX_CONTROL_BYTES + 1)})


async def chunked(data: bytes, step: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), step):
        yield data[start : start + step]


@pytest.mark.parametrize("source_kind", ["bytes", "path", "stream"])
async def test_a_file_arrives_whole_from_any_source(
    pair: tuple[PeerChannel, PeerChannel], tmp_path: Path, source_kind: str
) -> None:
    source, target = pair
    data = os.urandom(1_000_000 + 17)
    origin = tmp_path / "origin.bin"
    origin.write_bytes(data)
    sources: dict[str, Any] = {
        "bytes": data,
        "path": origin,
        "stream": chunked(data, 10_007),  # pieces that do not line up with chunks
    }
    progress: list[tuple[int, int]] = []
    received_pieces: list[bytes] = []

    async def collect(piece: bytes) -> None:
        received_pieces.append(piece)

    sinks: dict[str, Any] = {"bytes": None, "path": tmp_path / "copy.bin", "stream": collect}
    async with asyncio.TaskGroup() as tasks:
        receiving = tasks.create_task(
            target.receive_file("app", sinks[source_kind], timeout=WAIT_S)
        )
        sent = await source.send_file(
            "app", sources[source_kind], progress=lambda done, total: progress.append((done, total))
        )
    received = receiving.result()

    expected_total = -1 if source_kind == "stream" else len(data)
    assert progress[-1] == (len(data), expected_total)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    assert sent.size == received.size == len(data)
    assert sent.sha256 == received.sha256 == hashlib.sha256(data).hexdigest()
    assert sent.chunks == received.chunks == 8
    if source_kind == "bytes":
        assert received.data == data
    elif source_kind == "path":
        assert received.data is None
        assert (tmp_path / "copy.bin").read_bytes() == data
        assert not (tmp_path / "copy.bin.part").exists()
    else:
        assert b"".join(received_pieces) == data


async def test_an_empty_file(pair: tuple[PeerChannel, PeerChannel], tmp_path: Path) -> None:
    source, target = pair
    sent = await source.send_file("empty", chunked(b"", 1))
    received = await target.receive_file("empty", tmp_path / "empty", timeout=WAIT_S)
    assert (sent.chunks, received.size, (tmp_path / "empty").read_bytes()) == (0, 0, b"")
    assert received.sha256 == hashlib.sha256(b"").hexdigest()


async def test_chunks_out_of_order_and_repeated_still_assemble(
    open_channel: OpenChannel, raw: RawSender
) -> None:
    target = await open_channel(TARGET, SOURCE)
    data = os.urandom(50_000)
    head, chunks, end = file_messages(raw, data, chunk_bytes=4096)
    transfer = FileHead.parse(head[1]).transfer
    resent = raw.envelope(wire.FILE_CHUNK, FileChunk(transfer, 3, data[3 * 4096 : 4 * 4096]).body())
    shuffled = [*chunks, chunks[0], chunks[5], resent, end]  # chunks sent again, and a resend
    random.Random(7).shuffle(shuffled)
    await raw.publish(chunks[2], head, *shuffled)

    received = await target.receive_file("app", timeout=WAIT_S)
    assert received.data == data
    assert target.refused.total() == 0


async def test_a_conflicting_chunk_fails_the_transfer(
    open_channel: OpenChannel, raw: RawSender, tmp_path: Path
) -> None:
    target = await open_channel(TARGET, SOURCE)
    data = os.urandom(20_000)
    head, chunks, end = file_messages(raw, data, chunk_bytes=4096)
    transfer = FileHead.parse(head[1]).transfer
    conflicting = raw.envelope(wire.FILE_CHUNK, FileChunk(transfer, 1, os.urandom(4096)).body())
    await raw.publish(head, *chunks[:3], conflicting, *chunks[3:], end)

    with pytest.raises(TransferFailed) as caught:
        await target.receive_file("app", tmp_path / "app", timeout=WAIT_S)
    assert caught.value.code == "bad_chunk"
    assert await asyncio.to_thread(os.listdir, tmp_path) == []  # the partial file is gone


async def test_a_wrong_digest_fails_the_transfer(open_channel: OpenChannel, raw: RawSender) -> None:
    target = await open_channel(TARGET, SOURCE)
    data = os.urandom(10_000)
    head, chunks, _ = file_messages(raw, data, chunk_bytes=4096)
    transfer = FileHead.parse(head[1]).transfer
    wrong = raw.envelope(
        wire.FILE_END, FileEnd(transfer, len(data), 3, hashlib.sha256(b"other").digest()).body()
    )
    await raw.publish(head, *chunks, wrong)
    with pytest.raises(TransferFailed) as caught:
        await target.receive_file("app", timeout=WAIT_S)
    assert caught.value.code == "checksum_mismatch"


async def test_a_file_that_stops_is_incomplete_and_nothing_is_a_timeout(
    open_channel: OpenChannel, raw: RawSender
) -> None:
    target = await open_channel(TARGET, SOURCE)
    with pytest.raises(TransferFailed) as caught:
        await target.receive_file("app", timeout=0.05)
    assert caught.value.code == "timeout"
    head, chunks, end = file_messages(raw, os.urandom(10_000), chunk_bytes=4096)
    await raw.publish(head, chunks[0], chunks[2], end)
    with pytest.raises(TransferFailed) as caught:
        await target.receive_file("app", timeout=0.5)
    assert caught.value.code == "incomplete"


async def test_a_control_message_inside_a_file_fails_it(
    pair: tuple[PeerChannel, PeerChannel],
) -> None:
    source, target = pair
    await source.send("failed", {"code": "disk_full"})
    with pytest.raises(TransferFailed) as caught:
        await target.receive_file("app", timeout=WAIT_S)
    assert caught.value.code == "unexpected_message"
    assert caught.value.received is not None
    assert caught.value.received.body == {"code": "disk_full"}


async def test_a_restarted_transfer_replaces_the_abandoned_one(
    open_channel: OpenChannel, raw: RawSender
) -> None:
    target = await open_channel(TARGET, SOURCE)
    head, chunks, _ = file_messages(raw, os.urandom(20_000), chunk_bytes=4096)
    await raw.publish(head, *chunks[:2])  # the sender broke off here...
    data = os.urandom(30_000)
    head, chunks, end = file_messages(raw, data, chunk_bytes=4096)
    await raw.publish(head, *chunks, end)  # ...and began again
    assert (await target.receive_file("app", timeout=WAIT_S)).data == data


async def test_a_file_restarted_by_another_sender_is_refused(
    open_channel: OpenChannel, raw: RawSender, key: bytes
) -> None:
    """Even one holding the key (a second agent of the source, or a compromised one
    started again) cannot take over a file the first sender began."""
    target = await open_channel(TARGET, SOURCE)
    data = os.urandom(20_000)
    head, chunks, end = file_messages(raw, data, chunk_bytes=4096)
    await raw.publish(head, *chunks[:2])
    honest = raw.instance
    raw.restart()
    planted, planted_chunks, planted_end = file_messages(raw, b"planted" * 3000, chunk_bytes=4096)
    await raw.publish(planted, *planted_chunks, planted_end)
    raw.instance, raw.seq = honest, 3
    await raw.publish(*chunks[2:], end)
    assert (await target.receive_file("app", timeout=WAIT_S)).data == data
    assert target.refused == {"other_instance": 2 + len(planted_chunks)}


async def test_a_restart_whose_chunks_overtake_its_head_still_assembles(
    open_channel: OpenChannel, raw: RawSender
) -> None:
    target = await open_channel(TARGET, SOURCE)
    abandoned_head, abandoned_chunks, _ = file_messages(raw, os.urandom(9000), chunk_bytes=4096)
    data = os.urandom(9000)
    head, chunks, end = file_messages(raw, data, chunk_bytes=4096)
    await raw.publish(abandoned_head, abandoned_chunks[0], chunks[1], head, abandoned_chunks[1])
    await raw.publish(chunks[0], end, chunks[2])
    assert (await target.receive_file("app", timeout=WAIT_S)).data == data


async def test_garbage_is_dropped_and_counted(open_channel: OpenChannel, raw: RawSender) -> None:
    """Malformed envelopes, even sealed with the key (a compromised peer); the tag is
    checked before the CBOR is parsed, so anyone else's garbage is not even looked at."""
    target = await open_channel(TARGET, SOURCE)
    good = raw.seal("ok", {})[wire.TAG_BYTES :]
    envelope = cbor2.loads(good)
    malformed = [
        b"not cbor at all \xff\xff",
        b"",
        cbor2.dumps([1, 2, 3]),
        cbor2.dumps({**envelope, "v": 1}),
        cbor2.dumps({**envelope, "extra": 1}),
        cbor2.dumps({**envelope, "s": -1}),
        cbor2.dumps({**envelope, "k": "BAD"}),
        cbor2.dumps({**envelope, "b": {"when": cbor2.CBORTag(1, 0)}}),
        cbor2.dumps({**envelope, "b": {1: "int key"}}),
        good + b"\x00",  # trailing bytes
        b"\x81" * 100 + b"\x00",  # deep nesting
        cbor2.dumps({**envelope, "k": "note", "b": {"x": b"x" * wire.MAX_CONTROL_BYTES}}),
    ]
    await raw.publish(*(wire.seal(raw.key, raw.topic, garbage) for garbage in malformed))
    unsealed = [good, b"\x00" * (wire.MAX_MESSAGE_BYTES + 1), b"short"]
    await raw.publish(*unsealed)
    raw.seq = 0  # the one good message was never published
    await raw.publish(raw.envelope("still", {"works": True}))
    message = await target.get_message(SOURCE, kind="still", timeout=WAIT_S)
    assert message.body == {"works": True}
    # The oversized one is refused by its size, before any tag is computed.
    assert target.refused == {"malformed": len(malformed) + 1, "forged": 2}


async def test_replayed_reordered_and_forged_messages_are_refused_and_counted(
    open_channel: OpenChannel, raw: RawSender, topic: str
) -> None:
    target = await open_channel(TARGET, SOURCE)
    configuration = raw.seal("configuration", {})
    await raw.publish(configuration, configuration)  # a replay of what came already
    dependencies, activate = raw.seal("dependencies", {}), raw.seal("activate", {})
    await raw.publish(activate)  # overtakes the one before it: a gap
    # Someone without the key, numbering as the source would next.
    async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"x-{secrets.token_hex(6)}") as c:
        forger = RawSender(c, topic, secrets.token_bytes(wire.KEY_BYTES))
        forger.instance, forger.seq = raw.instance, 1
        await forger.publish(forger.envelope("dependencies", {"image": True}))
    await raw.publish(dependencies)

    assert (await target.receive_single(timeout=WAIT_S)).kind == "configuration"
    assert (await target.receive_single(timeout=WAIT_S)).body == {}  # the source's own
    with pytest.raises(PeerTimeout):  # what came out of order is not taken later either
        await target.receive_single(timeout=0.5)
    assert target.refused == {"repeat": 1, "gap": 1, "forged": 1}


async def test_a_late_receiver_gets_what_was_sent_while_it_was_away(
    open_channel: OpenChannel,
) -> None:
    first = await open_channel(TARGET, SOURCE)  # makes the persistent session
    await first.disconnect()
    source = await open_channel(SOURCE, TARGET)
    for n in range(5):
        await source.send("queued", {"n": n})
    await source.send_file("app", b"payload " * 1000)

    later = await open_channel(TARGET, SOURCE)
    got = [await later.get_message(SOURCE, kind="queued", timeout=WAIT_S) for _ in range(5)]
    assert [m.body["n"] for m in got] == list(range(5))
    assert (await later.receive_file("app", timeout=WAIT_S)).data == b"payload " * 1000


async def test_an_ended_session_is_forgotten(topic: str, raw: RawSender, key: bytes) -> None:
    first = PeerChannel(me=TARGET, key=key, broker_url=BROKER)
    await first.connect(SOURCE, topic)
    await first.disconnect(end_session=True)
    await raw.publish(raw.envelope("lost", {}))  # nobody subscribes any more
    async with PeerChannel(me=TARGET, key=key, broker_url=BROKER) as again:
        await again.connect(SOURCE, topic)
        raw.restart()  # a conversation of its own, numbered from 0
        await raw.publish(raw.envelope("kept", {}))
        assert (await again.receive_single(timeout=WAIT_S)).kind == "kept"
        await again.disconnect(end_session=True)


async def test_disconnect_leaves_nothing_running(open_channel: OpenChannel) -> None:
    before = asyncio.all_tasks()
    target = await open_channel(TARGET, SOURCE)
    source = await open_channel(SOURCE, TARGET)
    await source.send("hello", {})
    await target.get_message(SOURCE, timeout=WAIT_S)
    waiting = asyncio.create_task(target.get_message(SOURCE, timeout=WAIT_S))
    listing = asyncio.create_task(anext(aiter(target.receive_queue()), None))
    await asyncio.sleep(0)
    await target.disconnect()
    await source.disconnect()
    with pytest.raises(PeerUnavailable):
        await waiting
    assert await listing is None  # the queue simply ends
    with pytest.raises(PeerUnavailable):
        await source.send("after", {})
    assert asyncio.all_tasks() - before == {asyncio.current_task()} - before


async def test_an_unreachable_broker_is_unavailable_and_leaks_nothing() -> None:
    before = asyncio.all_tasks()
    channel = PeerChannel(
        me=SOURCE, key=bytes(wire.KEY_BYTES), broker_url="mqtt://127.0.0.1:1", broker_timeout=2
    )
    with pytest.raises(PeerUnavailable):
        await channel.connect(TARGET, "edgecloud/peer/nowhere")
    await channel.disconnect()
    assert asyncio.all_tasks() - before == {asyncio.current_task()} - before


def test_names_that_would_break_the_topic_are_refused() -> None:
    with pytest.raises(ValueError, match="level"):
        PeerChannel(me="a/b", key=KEY)
    with pytest.raises(ValueError, match="mqtt://"):
        PeerChannel(me="a", key=KEY, broker_url="http://127.0.0.1")
    with pytest.raises(ValueError, match="key"):
        PeerChannel(me="a", key=b"short")


# The wire format on its own.

INSTANCE = b"\x01" * wire.INSTANCE_BYTES
TRANSFER = b"\x02" * wire.TRANSFER_ID_BYTES
KEY = b"\x03" * wire.KEY_BYTES
ON = "edgecloud/peer/m-1/node-source"


def test_a_message_round_trips() -> None:
    payload = wire.encode_message(
        key=KEY, topic=ON, instance=INSTANCE, seq=7, kind="level", body={"level": 2}
    )
    message = wire.decode_message(payload, key=KEY, topic=ON, src="peer")
    assert (message.src, message.kind, message.seq) == ("peer", "level", 7)
    assert message.body == {"level": 2}
    assert set(cbor2.loads(payload[wire.TAG_BYTES :])) == {"v", "e", "s", "k", "b"}


@pytest.mark.parametrize(
    "change",
    ["another_key", "another_migration", "the_other_direction", "a_flipped_bit", "no_tag"],
)
def test_a_message_sealed_for_somewhere_else_is_unauthenticated(change: str) -> None:
    payload = wire.encode_message(
        key=KEY, topic=ON, instance=INSTANCE, seq=7, kind="activate", body={}
    )
    key, topic = KEY, ON
    if change == "another_key":
        key = b"\x04" * wire.KEY_BYTES
    elif change == "another_migration":
        topic = "edgecloud/peer/m-2/node-source"
    elif change == "the_other_direction":
        topic = "edgecloud/peer/m-1/node-target"
    elif change == "a_flipped_bit":
        payload = payload[:-1] + bytes([payload[-1] ^ 1])
    else:
        payload = payload[wire.TAG_BYTES :]
    with pytest.raises(wire.Unauthenticated):
        wire.decode_message(payload, key=key, topic=topic, src="peer")


def assembler_for(size: int | None, *, chunk_bytes: int = 4, limit: int = 100) -> FileAssembler:
    return FileAssembler(FileHead(TRANSFER, "f", chunk_bytes, size), max_file_bytes=limit)


def chunk(index: int, data: bytes) -> FileChunk:
    return FileChunk(TRANSFER, index, data)


def end_of(data: bytes, chunk_bytes: int = 4) -> FileEnd:
    count = wire.chunks_for(len(data), chunk_bytes)
    return FileEnd(TRANSFER, len(data), count, hashlib.sha256(data).digest())


def feed_all(assembler: FileAssembler, parts: list[FileChunk | FileEnd]) -> None:
    for part in parts:
        if isinstance(part, FileChunk):
            assembler.add(part)
        else:
            assembler.finish(part)


def test_the_assembler_hands_back_pieces_in_order() -> None:
    assembler = assembler_for(None)
    assert assembler.add(chunk(1, b"efgh")) == []
    assert assembler.add(chunk(2, b"ij")) == []
    assert assembler.add(chunk(1, b"efgh")) == []  # an exact repeat
    assert assembler.add(chunk(0, b"abcd")) == [b"abcd", b"efgh", b"ij"]
    assert assembler.add(chunk(0, b"abcd")) == []
    assert not assembler.complete
    assembler.finish(end_of(b"abcdefghij"))
    assert assembler.complete
    assert assembler.sha256() == hashlib.sha256(b"abcdefghij").digest()


@pytest.mark.parametrize(
    ("size", "feed", "code"),
    [
        (10, [chunk(3, b"xx")], "bad_chunk"),  # past the end
        (10, [chunk(0, b"abc")], "bad_chunk"),  # short, not the last
        (10, [chunk(2, b"ijk")], "bad_chunk"),  # the last, of the wrong length
        (None, [chunk(0, b"abcde")], "bad_chunk"),  # longer than a chunk
        (None, [chunk(0, b"")], "bad_chunk"),
        (None, [chunk(1, b"ab"), chunk(2, b"cd")], "bad_chunk"),  # after the short last one
        (None, [chunk(5, b"ab"), chunk(2, b"c")], "bad_chunk"),  # two short ones
        (None, [chunk(0, b"abcd"), chunk(0, b"abce")], "bad_chunk"),  # conflicting repeat
        (None, [chunk(3, b"abcd"), chunk(3, b"abce")], "bad_chunk"),
        (None, [chunk(25, b"abcd")], "too_large"),
        (None, [chunk(3, b"abcd"), end_of(b"0123456789")], "bad_chunk"),
        (10, [end_of(b"012345678")], "malformed"),  # the trailer contradicts the head
        (
            None,
            [FileEnd(TRANSFER, 10, 2, hashlib.sha256(b"0123456789").digest())],
            "malformed",
        ),
    ],
)
def test_the_assembler_refuses_what_cannot_be(
    size: int | None, feed: list[FileChunk | FileEnd], code: str
) -> None:
    with pytest.raises(TransferFailed) as caught:
        feed_all(assembler_for(size), feed)
    assert caught.value.code == code


def test_the_assembler_refuses_an_oversize_head() -> None:
    with pytest.raises(TransferFailed) as caught:
        assembler_for(101)
    assert caught.value.code == "too_large"


@pytest.mark.parametrize(
    "body",
    [
        {"x": TRANSFER, "n": "f"},
        {"x": TRANSFER, "n": "f", "c": 0},
        {"x": TRANSFER, "n": "", "c": 4},
        {"x": b"short", "n": "f", "c": 4},
        {"x": TRANSFER, "n": "f", "c": 4, "z": -1},
        {"x": TRANSFER, "n": "f", "c": 4, "z": True},
        {"x": TRANSFER, "n": "f", "c": wire.MAX_CHUNK_BYTES + 1},
        {"x": TRANSFER, "n": "f", "c": 4, "extra": 1},
    ],
)
def test_a_bad_file_head_is_malformed(body: dict[str, Any]) -> None:
    with pytest.raises(TransferFailed) as caught:
        FileHead.parse(body)
    assert caught.value.code == "malformed"


VANISHING_SIDE = """
import asyncio, os, sys
from edgecloud_agent.peers.channel import PeerChannel

async def main():
    channel = PeerChannel(
        me=sys.argv[1], key=bytes.fromhex(sys.argv[5]), broker_url=sys.argv[2],
        last_will=("failed", {"code": "peer_lost"}),
    )
    await channel.connect(sys.argv[3], sys.argv[4])
    os._exit(0)  # gone without a word to the broker, as a killed process is

asyncio.run(main())
"""


async def test_a_side_that_vanishes_is_announced_by_its_last_will(
    open_channel: OpenChannel, topic: str, key: bytes
) -> None:
    target = await open_channel(TARGET, SOURCE)
    vanished = await asyncio.create_subprocess_exec(
        sys.executable, "-c", VANISHING_SIDE, SOURCE, BROKER, TARGET, topic, key.hex()
    )
    assert await vanished.wait() == 0
    will = await target.get_message(SOURCE, timeout=10)
    assert (will.kind, will.body) == ("failed", {"code": "peer_lost"})
    # Its session is left behind on the broker: end it as the source would have.
    await open_channel(SOURCE, TARGET)


async def test_a_clean_disconnect_sends_no_will(open_channel: OpenChannel) -> None:
    target = await open_channel(TARGET, SOURCE)
    source = await open_channel(SOURCE, TARGET, last_will=("failed", {"code": "peer_lost"}))
    await source.disconnect()
    with pytest.raises(TimeoutError):
        await target.get_message(SOURCE, timeout=1)
