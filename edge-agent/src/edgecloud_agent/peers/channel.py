"""The channel two agents talk through during a migration, over one MQTT broker.

Both sides use the target node's Mosquitto: the target locally, the source remotely. Each
side publishes to ``<topic>/<me>`` and subscribes to ``<topic>/<peer>``, at QoS 2, with a
persistent session (MQTT 3.1.1, ``clean_session=False``) under a client id of its own: the
one its ``login`` (made by the target's agent for this migration, and bound to it by the
broker) gives, or else one derived from ``me`` and ``topic``. What the broker queued for a
side while it was away reaches it when it connects again, provided it had connected once
before (that is what makes the session). Two clients with the same id throw each other off
the broker, so keep exactly one :class:`PeerChannel` per (``me``, ``topic``) at a time, in
the whole fleet.

aiomqtt acknowledges a message before the agent has handled it, so a message that was
received but is lost to a full queue is lost for good: both queues hold ``queue_max``,
and the broker holds back (up to its own per-client limit) while they are full. One reader
task checks every message and queues the good ones; read them with exactly one consumer
at a time.

Every message is sealed with the migration's key (:mod:`.wire`). The first sealed message
fixes the peer's sending instance; from then on its messages must come numbered one after
another, as one MQTT client publishing one at a time on one topic at QoS 2 delivers them.
The reader refuses, and counts in ``refused`` by reason: ``malformed`` payloads,
``forged`` ones (not sealed with the key for this topic: someone else's, or a message of
another migration or direction), ``repeat`` (a number already taken: the broker's
redelivery or a replay; dropped either way), ``gap`` (a number ahead of the next: one
missing, or a reordering; the conversation then stalls and times out, which the migration
turns into a rollback) and ``other_instance`` (sealed, but from a second sender instance).

The broker may be reachable at several addresses, one per link of its node in order of
preference (the WAN's, then the mesh's). The channel connects over the first that answers
and, when that link dies mid-conversation, falls over to the next (:meth:`_fail_over`): the
same client id with the same persistent session, so the broker hands it what it queued
meanwhile; the same instance and numbering, so the message in flight is published again
under its number (a copy the broker had already is a ``repeat`` to the peer and dropped);
and the inbox kept, so nothing received is lost. The side that fell over then says it is
back (``RESUMED_SEQ``): a peer holds the last will the broker sent in that side's name for
``will_grace_s`` and forgets it when the side comes back in time.
"""

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self
from urllib.parse import urlsplit

import aiomqtt

from edgecloud_contracts.migrations import BrokerLogin

from .wire import (
    FILE_CHUNK,
    FILE_END,
    FILE_HEAD,
    INSTANCE_BYTES,
    KEY_BYTES,
    MAX_CHUNK_BYTES,
    MAX_NAME_CHARS,
    RESERVED_PREFIX,
    TRANSFER_ID_BYTES,
    FileAssembler,
    FileChunk,
    FileEnd,
    FileHead,
    MalformedMessage,
    PeerError,
    PeerMessage,
    PeerTimeout,
    PeerUnavailable,
    ProtocolError,
    TransferFailed,
    Unauthenticated,
    check_kind,
    decode_message,
    encode_message,
)

__all__ = [
    "FileSink",
    "FileSource",
    "PeerChannel",
    "PeerError",
    "PeerMessage",
    "PeerTimeout",
    "PeerUnavailable",
    "ProtocolError",
    "ReceivedFile",
    "SentFile",
    "TransferFailed",
]

logger = logging.getLogger(__name__)

FileSource = bytes | Path | AsyncIterator[bytes]
FileSink = Path | Callable[[bytes], Awaitable[None]] | None
_FORBIDDEN_IN_LEVEL = frozenset("/+#\0")


WILL_SEQ = 1 << 40
"""The last will's number: above any sequence a channel reaches, and taken whatever came
before it (the sender is gone: nothing else is coming)."""
RESUMED_SEQ = WILL_SEQ + 1
"""A side that fell over to another address of the broker is back: the last will the
broker sent for its old connection is void. Outside the numbering, as the will is."""
RESUMED = "channel.resumed"
FAILOVER_RETRY_S = 0.5
CONNECT_TIMEOUT_S = 10.0
"""Connecting over one of several addresses: a handshake over the mesh takes about 1 s."""
FAILOVER_WINDOW_S = 30.0
"""How long a channel that lost its link tries the broker's other addresses."""


@dataclass(frozen=True, slots=True)
class SentFile:
    name: str
    size: int
    sha256: str  # hex
    chunks: int
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class ReceivedFile:
    name: str
    size: int
    sha256: str  # hex
    chunks: int
    data: bytes | None
    """The file itself, when it was received without a sink."""


class PeerChannel:
    """One side of a conversation with one peer. After a :class:`PeerUnavailable`,
    ``disconnect()`` and ``connect()`` again: the session keeps what came meanwhile."""

    def __init__(
        self,
        *,
        me: str,
        key: bytes,
        broker_url: str | Sequence[str] = "mqtt://127.0.0.1:1883",
        chunk_bytes: int = 128 * 1024,
        max_file_bytes: int = 2 << 30,
        queue_max: int = 10_000,
        broker_timeout: float = 30.0,
        keepalive_s: int = 60,
        last_will: tuple[str, dict[str, Any]] | None = None,
        login: BrokerLogin | None = None,
        will_grace_s: float = 0.0,
    ) -> None:
        """``key``: the migration's (``KEY_BYTES``), which seals every message both ways.
        ``broker_timeout`` bounds connecting, subscribing and each single publish.
        ``last_will`` (kind, body) is what the broker tells the peer in this side's name
        when this side vanishes without disconnecting (a killed process, a dead node: the
        latter noticed after 1.5 ``keepalive_s``), so the peer stops waiting at once.
        ``broker_url``: one address, or the broker's addresses in order of preference (the
        channel falls over to the next when one dies). ``will_grace_s``: how long the peer's
        last will is held back, in case the peer comes back over another address."""
        _check_level("me", me)
        if len(key) != KEY_BYTES:
            raise ValueError(f"key must be {KEY_BYTES} bytes")
        urls = [broker_url] if isinstance(broker_url, str) else list(broker_url)
        if not urls:
            raise ValueError("broker_url: at least one address")
        self._addresses = [_broker_address(url) for url in urls]
        if not 0 < chunk_bytes <= MAX_CHUNK_BYTES:
            raise ValueError(f"chunk_bytes must be 1..{MAX_CHUNK_BYTES}")
        if queue_max < 1 or max_file_bytes < 0:
            raise ValueError("queue_max must be positive, max_file_bytes not negative")
        self.me = me
        self._at = 0
        """The index of the address connected to (or last tried)."""
        self._generation = 0
        """Counts connections: a failure seen on an older one is already dealt with."""
        self._failing_over = asyncio.Lock()
        self._link_lost: asyncio.Future[None] | None = None
        self._will_grace_s = will_grace_s
        self._held_will: asyncio.TimerHandle | None = None
        self.failovers = 0
        """How many times the channel fell over to another address of the broker."""
        self.first_address_only: frozenset[str] = frozenset()
        """Files (by name) that go over the broker's first address only: a link policy
        keeping bulk off the mesh. One begun there fails (``link_policy``) on a fall-over."""
        self._chunk_bytes = chunk_bytes
        self._max_file_bytes = max_file_bytes
        self._queue_max = queue_max
        self._broker_timeout = broker_timeout
        self._keepalive_s = keepalive_s
        self._last_will = last_will
        self._login = login
        self._key = key
        if last_will is not None:
            check_kind(last_will[0])
        # With the sequence number this names each message uniquely, also across restarts.
        self._instance = secrets.token_bytes(INSTANCE_BYTES)
        self._next_seq = 0
        self._peer_instance: bytes | None = None
        self._peer_next_seq = 0
        self._peer = ""
        self._client_id = ""
        self._inbox_topic = ""
        self._outbox_topic = ""
        self._client: aiomqtt.Client | None = None
        self._inbox: _Inbox | None = None
        self._stack: AsyncExitStack | None = None
        self._link: AsyncExitStack | None = None
        self.refused: Counter[str] = Counter()
        """Messages refused, by reason (see the module's docstring)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    @property
    def peer(self) -> str:
        return self._peer

    @property
    def on_first_address(self) -> bool:
        """Whether the channel runs over the broker's first address (its node's WAN), where
        bulk transfers may go."""
        return self._at == 0

    async def connect(self, device_id: str, topic: str) -> None:
        """Join the conversation under ``topic`` with ``device_id`` (the other side)."""
        if self._stack is not None:
            raise RuntimeError("already connected: disconnect first")
        _check_level("device_id", device_id)
        if not topic or topic.endswith("/") or any(c in "+#\0" for c in topic):
            raise ValueError(f"bad topic {topic!r}")
        self._peer = device_id
        self._inbox_topic, self._outbox_topic = f"{topic}/{device_id}", f"{topic}/{self.me}"
        if self._login is not None:
            self._client_id = self._login.client_id
        else:
            name = hashlib.sha256(f"{self.me}\n{topic}".encode()).hexdigest()[:32]
            self._client_id = f"edgecloud-peer-{name}"
        await self._open_first(range(len(self._addresses)))
        inbox = _Inbox(self._queue_max)
        stack = AsyncExitStack()
        stack.push_async_callback(self._close_link)
        reader = asyncio.create_task(self._read(inbox), name=f"peer-{self._peer}")
        stack.push_async_callback(_stop, reader)
        self._inbox, self._stack = inbox, stack
        logger.debug("peer channel %s <-> %s on %s", self.me, device_id, topic)

    async def _open_first(self, order: Sequence[int]) -> None:
        """Connect and subscribe over the first address in ``order`` that answers."""
        failures = []
        for index in order:
            self._at = index
            client = self._new_client(clean_session=False)
            link = AsyncExitStack()
            # With other addresses to try, a dead link (a cut WAN drops the SYN) is given up
            # sooner than the broker's whole timeout.
            patience = self._broker_timeout if len(order) == 1 else CONNECT_TIMEOUT_S
            try:
                async with asyncio.timeout(patience):
                    await link.enter_async_context(client)
                    await client.subscribe(self._inbox_topic, qos=2, timeout=patience)
            except (aiomqtt.MqttError, TimeoutError) as err:
                await _close_quietly(link)
                failures.append(f"{_where(self._addresses[index])}: {err or 'timed out'}")
                continue
            except BaseException:
                await _close_quietly(link)
                raise
            self._client, self._link, self._generation = client, link, self._generation + 1
            self._link_lost = asyncio.get_running_loop().create_future()
            return
        raise PeerUnavailable("broker " + "; ".join(failures))

    async def _close_link(self) -> None:
        link, self._link, self._client = self._link, None, None
        if self._held_will is not None:
            self._held_will.cancel()
        if link is not None:
            await link.aclose()

    async def _fail_over(self, generation: int, cause: object) -> None:
        """The connection ``generation`` is lost: connect over the other addresses, the
        ones after it first (PeerUnavailable when none answers, or there is none)."""
        async with self._failing_over:
            if generation != self._generation:
                return  # the reader or a publish got there first
            if len(self._addresses) == 1:
                raise PeerUnavailable(f"lost the broker: {cause}")
            lost = self._at
            if self._link_lost is not None and not self._link_lost.done():
                self._link_lost.set_result(None)
            await _close_quietly_link(self._link)
            self._link = self._client = None
            order = [*range(lost + 1, len(self._addresses)), *range(lost)]
            logger.warning(
                "peer channel %s <-> %s lost %s (%s): trying its other addresses",
                self.me,
                self._peer,
                _where(self._addresses[lost]),
                cause,
            )
            # A link coming up (a neighbour's route, a mesh handshake) may take a few tries.
            deadline = asyncio.get_running_loop().time() + FAILOVER_WINDOW_S
            while True:
                try:
                    await self._open_first(order)
                    break
                except PeerUnavailable:
                    if asyncio.get_running_loop().time() >= deadline:
                        raise
                    await asyncio.sleep(FAILOVER_RETRY_S)
            self.failovers += 1
            assert self._client is not None
            # The broker may have sent this side's last will already: the peer forgets it.
            try:
                await self._client.publish(
                    self._outbox_topic, self._seal(RESUMED_SEQ, RESUMED, {}), qos=2
                )
            except aiomqtt.MqttError as err:
                raise PeerUnavailable(f"could not resume: {err}") from err
            logger.warning(
                "peer channel %s <-> %s resumed over %s",
                self.me,
                self._peer,
                _where(self._addresses[self._at]),
            )

    async def disconnect(self, *, end_session: bool = False) -> None:
        """Leave; with ``end_session`` the broker also forgets this side's session (and what
        it queued for it): for the end of a conversation. Messages received but not yet
        read are gone either way."""
        stack, self._stack = self._stack, None
        if stack is not None:
            try:
                await stack.aclose()
            except aiomqtt.MqttError as err:
                logger.info("peer channel to %s closed uncleanly: %s", self._peer, err)
            # aiomqtt cancels its housekeeping task on the way out: let it finish here.
            await asyncio.sleep(0)
        if end_session and self._client_id:
            try:
                # A clean session under the same id replaces the persistent one.
                async with self._new_client(clean_session=True):
                    pass
            except aiomqtt.MqttError as err:
                raise PeerUnavailable(f"could not end the session: {err}") from err
            await asyncio.sleep(0)

    async def send(self, kind: str, body: dict[str, Any]) -> None:
        """One control message; returns once the broker has it (QoS 2)."""
        if kind.startswith(RESERVED_PREFIX):
            raise ValueError(f"kinds starting {RESERVED_PREFIX!r} are the file transfer's")
        await self._publish(kind, body)

    async def get_message(
        self, src: str, *, kind: str | None = None, timeout: float
    ) -> PeerMessage:
        """The next message from ``src``; with ``kind``, anything else raises ProtocolError."""
        if self._peer and src != self._peer:
            raise ValueError(f"this channel talks to {self._peer!r}, not {src!r}")
        message = await self._next(timeout, f"{kind or 'message'} from {src}")
        if kind is not None and message.kind != kind:
            raise ProtocolError(message, expected=kind)
        return message

    async def receive_single(self, *, timeout: float) -> PeerMessage:
        return await self._next(timeout, "message")

    def receive_queue(self) -> AsyncIterator[PeerMessage]:
        """Every message as it arrives; ends at disconnect, raises if the broker is lost."""
        return _Arrivals(self)

    async def send_file(
        self,
        name: str,
        source: FileSource,
        *,
        size: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> SentFile:
        """Send a file as head, chunks and trailer. ``size`` (for a stream) lets the receiver
        refuse early; ``progress(sent_bytes, size or -1)`` follows each chunk. Send nothing
        else meanwhile: the receiver takes any other message inside a file as an error."""
        if not 0 < len(name) <= MAX_NAME_CHARS:
            raise ValueError("bad file name")
        started = time.monotonic()
        if isinstance(source, bytes):
            size = _same_size(size, len(source))
        elif isinstance(source, Path):
            size = _same_size(size, (await asyncio.to_thread(source.stat)).st_size)
        transfer = secrets.token_bytes(TRANSFER_ID_BYTES)
        self._check_link_policy(name)
        await self._publish(FILE_HEAD, FileHead(transfer, name, self._chunk_bytes, size).body())
        digest, sent, index = hashlib.sha256(), 0, 0
        async with contextlib.aclosing(_pieces(source, self._chunk_bytes)) as pieces:
            async for piece in pieces:
                digest.update(piece)
                self._check_link_policy(name)
                await self._publish(FILE_CHUNK, FileChunk(transfer, index, piece).body())
                index, sent = index + 1, sent + len(piece)
                if size is not None and sent > size:
                    raise ValueError(f"{name}: the source holds more than the {size} bytes said")
                if progress is not None:
                    progress(sent, -1 if size is None else size)
        if size is not None and sent != size:
            raise ValueError(f"{name}: the source held {sent} bytes, not the {size} said")
        await self._publish(FILE_END, FileEnd(transfer, sent, index, digest.digest()).body())
        elapsed = time.monotonic() - started
        return SentFile(name, sent, digest.hexdigest(), index, elapsed)

    def _check_link_policy(self, name: str) -> None:
        if name in self.first_address_only and not self.on_first_address:
            where = _where(self._addresses[self._at])
            raise TransferFailed("link_policy", f"{name} may not go over {where}")

    async def receive_file(
        self, name: str, sink: FileSink = None, *, timeout: float
    ) -> ReceivedFile:
        """Receive the file ``name``: into ``sink`` (a path, written as ``<path>.part`` and
        renamed when complete; or an async callback given the bytes in order), or into
        memory. ``timeout`` bounds the wait for each message of the file, not the whole.
        A new head for the same name restarts the file (the sender began again), unless a
        callback already got part of it."""
        writer = _SinkWriter(sink)
        try:
            assembler = await self._assemble(name, writer, timeout)
            digest = assembler.sha256()
            data = await writer.commit()
        except BaseException:
            writer.discard()
            raise
        size, chunks = assembler.received_bytes, assembler.received_chunks
        return ReceivedFile(name, size, digest.hex(), chunks, data)

    async def _assemble(self, name: str, writer: "_SinkWriter", timeout: float) -> FileAssembler:
        assembler: FileAssembler | None = None
        # The head can be overtaken: what comes before it waits here, within bounds.
        early: dict[bytes, list[FileChunk | FileEnd]] = {}
        early_bytes = early_count = 0
        while assembler is None or not assembler.complete:
            try:
                message = await self._next(timeout, f"file {name!r}")
            except PeerTimeout as err:
                code = "incomplete" if assembler is not None and assembler.ended else "timeout"
                raise TransferFailed(code, f"{name}: nothing more within {timeout:g}s") from err
            if message.kind == FILE_HEAD:
                head = FileHead.parse(message.body)
                if head.name != name:
                    raise TransferFailed(
                        "unexpected_message", f"file {head.name!r}, not {name!r}", received=message
                    )
                if assembler is not None and head.transfer == assembler.transfer:
                    continue
                if assembler is not None:
                    logger.warning("the sender restarted file %s from the beginning", name)
                    writer.restart()
                assembler = FileAssembler(head, max_file_bytes=self._max_file_bytes)
                for part in early.pop(head.transfer, []):
                    await _feed(assembler, part, writer)
            elif message.kind in (FILE_CHUNK, FILE_END):
                part = (FileChunk if message.kind == FILE_CHUNK else FileEnd).parse(message.body)
                if assembler is not None and part.transfer == assembler.transfer:
                    await _feed(assembler, part, writer)
                    continue
                # Ahead of its head, or left over from an abandoned transfer: kept, within
                # bounds, until a head claims it.
                early_count += 1
                early_bytes += len(part.data) if isinstance(part, FileChunk) else 0
                if early_bytes > self._max_file_bytes or early_count > self._queue_max:
                    raise TransferFailed("too_large", f"{name}: too much without a head")
                early.setdefault(part.transfer, []).append(part)
            else:
                raise TransferFailed(
                    "unexpected_message", f"{message.kind} inside file {name!r}", received=message
                )
        return assembler

    def _new_client(self, *, clean_session: bool) -> aiomqtt.Client:
        will = None
        if self._last_will is not None and not clean_session:
            kind, body = self._last_will
            # Numbered beyond any message this side sends, so it is never taken for a repeat.
            payload = self._seal(WILL_SEQ, kind, body)
            will = aiomqtt.Will(self._outbox_topic, payload, qos=2)
        host, port = self._addresses[self._at]
        return aiomqtt.Client(
            host,
            port,
            identifier=self._client_id,
            username=self._login.username if self._login is not None else None,
            password=self._login.password if self._login is not None else None,
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=clean_session,
            timeout=self._broker_timeout,
            keepalive=self._keepalive_s,
            will=will,
            # A QoS 2 handshake is four small packets: without this each waits out Nagle's
            # algorithm against the broker's delayed ACK (about 40 ms a message, measured).
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            max_queued_incoming_messages=self._queue_max,
            logger=logging.getLogger(f"{__name__}.mqtt"),
        )

    async def _publish(self, kind: str, body: dict[str, Any]) -> None:
        if self._stack is None:
            raise PeerUnavailable("the channel is not connected")
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        payload = self._seal(seq, kind, body)
        for _ in range(len(self._addresses)):
            client, generation, lost = self._client, self._generation, self._link_lost
            if client is None or lost is None:
                raise PeerUnavailable("the channel is not connected")
            # A publish waits out its whole timeout on a dead link: the reader's loss ends
            # the wait at once.
            publishing = asyncio.ensure_future(client.publish(self._outbox_topic, payload, qos=2))
            await asyncio.wait({publishing, lost}, return_when=asyncio.FIRST_COMPLETED)
            if not publishing.done():
                publishing.cancel()
                await asyncio.gather(publishing, return_exceptions=True)
                error: object = "the connection was lost"
            elif (failure := publishing.exception()) is None:
                return
            elif isinstance(failure, aiomqtt.MqttError):
                error = failure
            else:
                raise failure
            try:
                await self._fail_over(generation, error)
            except PeerUnavailable as err:
                raise PeerUnavailable(f"{kind} #{seq} not published: {error}") from err
        raise PeerUnavailable(f"{kind} #{seq} not published: every address failed")

    def _seal(self, seq: int, kind: str, body: dict[str, Any]) -> bytes:
        return encode_message(
            key=self._key,
            topic=self._outbox_topic,
            instance=self._instance,
            seq=seq,
            kind=kind,
            body=body,
        )

    async def _next(self, timeout: float | None, waiting_for: str) -> PeerMessage:
        if self._inbox is None:
            raise PeerUnavailable("the channel is not connected")
        try:
            async with asyncio.timeout(timeout):
                return await self._inbox.get()
        except TimeoutError as err:
            raise PeerTimeout(waiting_for, timeout or 0.0) from err

    async def _read(self, inbox: "_Inbox") -> None:
        failure: PeerUnavailable | None = None
        try:
            while failure is None:
                client, generation = self._client, self._generation
                cause: object = "the broker connection ended"
                try:
                    if client is not None:
                        async for mqtt_message in client.messages:
                            await self._take(self._accept(mqtt_message), inbox)
                except aiomqtt.MqttError as err:
                    cause = err
                try:
                    await self._fail_over(generation, cause)
                except PeerUnavailable as err:
                    failure = err
                    failure.__cause__ = cause if isinstance(cause, Exception) else None
        except Exception as err:  # a bug here must still reach the consumer, not vanish
            logger.exception("peer channel reader failed")
            failure = PeerUnavailable(f"the reader failed: {err!r}")
            failure.__cause__ = err
        finally:
            if failure is not None:
                logger.error("peer channel %s <-> %s: %s", self.me, self._peer, failure)
            inbox.close(failure)

    async def _take(self, message: PeerMessage | None, inbox: "_Inbox") -> None:
        """Queue an accepted message; a last will waits ``will_grace_s`` for its sender to
        come back over another address, which a message of it (or its resumption) shows."""
        if message is None:
            return
        if message.seq == WILL_SEQ and self._will_grace_s > 0:
            if self._held_will is None:
                self._held_will = asyncio.get_running_loop().call_later(
                    self._will_grace_s, self._release_will, inbox, message
                )
            return
        if self._held_will is not None:
            logger.info("%s is back: its last will is void", self._peer)
            self._held_will.cancel()
            self._held_will = None
        if message.seq != RESUMED_SEQ:
            await inbox.put(message)

    def _release_will(self, inbox: "_Inbox", will: PeerMessage) -> None:
        self._held_will = None
        inbox.put_now(will)

    def _accept(self, mqtt_message: aiomqtt.Message) -> PeerMessage | None:
        payload = mqtt_message.payload
        try:
            # A subscription left in the persistent session by an earlier conversation.
            if mqtt_message.topic.value != self._inbox_topic:
                raise MalformedMessage(f"topic {mqtt_message.topic.value}")
            if not isinstance(payload, bytes | bytearray):
                raise MalformedMessage(f"payload of type {type(payload).__name__}")
            message = decode_message(
                bytes(payload), key=self._key, topic=self._inbox_topic, src=self._peer
            )
        except MalformedMessage as err:
            return self._refuse("forged" if isinstance(err, Unauthenticated) else "malformed", err)
        if self._peer_instance is None:
            self._peer_instance = message.instance
        elif message.instance != self._peer_instance:
            return self._refuse("other_instance", f"{message.kind} #{message.seq}")
        if message.seq in (WILL_SEQ, RESUMED_SEQ):
            return message
        if message.seq < self._peer_next_seq:
            return self._refuse("repeat", f"{message.kind} #{message.seq}")
        if message.seq > self._peer_next_seq:
            return self._refuse(
                "gap", f"{message.kind} #{message.seq}, expected #{self._peer_next_seq}"
            )
        self._peer_next_seq += 1
        return message

    def _refuse(self, reason: str, what: object) -> PeerMessage | None:
        """Counts and logs a refused message; None, which :meth:`_accept` hands back."""
        self.refused[reason] += 1
        count = self.refused.total()
        # Hostile input could flood the log: the first, then every hundredth. A repeat is
        # mostly the broker redelivering after a reconnect, not worth a warning.
        level = logging.WARNING if count % 100 == 1 and reason != "repeat" else logging.DEBUG
        logger.log(
            level, "refused a message from %s (%s; %d so far): %s", self._peer, reason, count, what
        )
        return None


class _Closed:
    def __init__(self, failure: PeerUnavailable | None) -> None:
        self.failure = failure


class _Inbox:
    """Received messages, at most ``limit`` waiting; the reader's closing word never waits."""

    def __init__(self, limit: int) -> None:
        self._queue: asyncio.Queue[PeerMessage | _Closed] = asyncio.Queue()
        self._room = asyncio.Semaphore(limit)

    async def put(self, message: PeerMessage) -> None:
        await self._room.acquire()
        self._queue.put_nowait(message)

    def put_now(self, message: PeerMessage) -> None:
        """Beyond the limit: for the one last will."""
        self._queue.put_nowait(message)

    def close(self, failure: PeerUnavailable | None) -> None:
        self._queue.put_nowait(_Closed(failure))

    async def get(self) -> PeerMessage:
        item = await self._queue.get()
        if isinstance(item, _Closed):
            self._queue.put_nowait(item)  # for every later reader too
            if item.failure is None:
                raise _Disconnected("the channel is disconnected")
            raise PeerUnavailable(str(item.failure)) from item.failure.__cause__
        self._room.release()
        return item


class _Disconnected(PeerUnavailable):
    """Closed on purpose: ends :meth:`PeerChannel.receive_queue` quietly."""


class _Arrivals:
    def __init__(self, channel: PeerChannel) -> None:
        self._channel = channel

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> PeerMessage:
        try:
            return await self._channel._next(None, "message")
        except _Disconnected:
            raise StopAsyncIteration from None


class _SinkWriter:
    """Where a file's bytes go, in order; undone when the transfer fails."""

    def __init__(self, sink: FileSink) -> None:
        self._path = sink if isinstance(sink, Path) else None
        self._part = None if self._path is None else self._path.with_name(self._path.name + ".part")
        self._callback = None if sink is None or isinstance(sink, Path) else sink
        self._pieces: list[bytes] = []
        self._file: IO[bytes] | None = None
        self._delivered = False

    async def write(self, piece: bytes) -> None:
        if self._part is not None:
            if self._file is None:
                self._file = await asyncio.to_thread(self._part.open, "wb")
            await asyncio.to_thread(self._file.write, piece)
        elif self._callback is not None:
            self._delivered = True
            await self._callback(piece)
        else:
            self._pieces.append(piece)

    def restart(self) -> None:
        if self._delivered:
            raise TransferFailed("unexpected_message", "restarted after part was delivered")
        self._pieces.clear()
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()

    async def commit(self) -> bytes | None:
        if self._path is not None and self._part is not None:
            if self._file is None:  # an empty file
                self._file = await asyncio.to_thread(self._part.open, "wb")
            await asyncio.to_thread(self._file.close)
            await asyncio.to_thread(os.replace, self._part, self._path)
            return None
        return None if self._callback is not None else b"".join(self._pieces)

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._part is not None:
            self._part.unlink(missing_ok=True)


async def _feed(assembler: FileAssembler, part: FileChunk | FileEnd, writer: _SinkWriter) -> None:
    if isinstance(part, FileEnd):
        assembler.finish(part)
        return
    for piece in assembler.add(part):
        await writer.write(piece)


async def _pieces(source: FileSource, chunk_bytes: int) -> AsyncGenerator[bytes, None]:
    """The source cut into chunks of exactly ``chunk_bytes``, the last one shorter."""
    if isinstance(source, bytes):
        for start in range(0, len(source), chunk_bytes):
            yield source[start : start + chunk_bytes]
    elif isinstance(source, Path):
        file = await asyncio.to_thread(source.open, "rb")
        try:
            while piece := await asyncio.to_thread(file.read, chunk_bytes):
                yield piece
        finally:
            file.close()
    else:
        pending = bytearray()
        async for data in source:
            pending += data
            while len(pending) >= chunk_bytes:
                yield bytes(pending[:chunk_bytes])
                del pending[:chunk_bytes]
        if pending:
            yield bytes(pending)


async def _close_quietly(stack: AsyncExitStack) -> None:
    with contextlib.suppress(aiomqtt.MqttError):
        await stack.aclose()


async def _close_quietly_link(link: AsyncExitStack | None) -> None:
    """Close a connection that is dead already: its goodbye may fail or hang."""
    if link is None:
        return
    with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
        async with asyncio.timeout(2):
            await link.aclose()


def _broker_address(url: str) -> tuple[str, int]:
    address = urlsplit(url)
    if address.scheme != "mqtt" or not address.hostname:
        raise ValueError(f"broker_url must be mqtt://host[:port], not {url!r}")
    return address.hostname, address.port or 1883


def _where(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _stop(task: "asyncio.Task[None]") -> None:
    task.cancel()
    await asyncio.wait({task})  # unlike awaiting the task, a cancel of our own still raises


def _same_size(said: int | None, actual: int) -> int:
    if said is not None and said != actual:
        raise ValueError(f"size {said} given for a source of {actual} bytes")
    return actual


def _check_level(what: str, value: str) -> None:
    if not value or _FORBIDDEN_IN_LEVEL & set(value):
        raise ValueError(f"{what} {value!r} cannot be one level of an MQTT topic")
