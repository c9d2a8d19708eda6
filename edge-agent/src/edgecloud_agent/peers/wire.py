"""The peer protocol on the wire: one sealed CBOR map per MQTT message, files as numbered
chunks.

A message is a 32-byte HMAC-SHA256 tag followed by the CBOR envelope. The key is the
migration's own, given to both nodes by the scheduler over their authenticated cloud
sessions and never sent between them; the tag covers the MQTT topic the message is published
on (which names the migration and the sender) and the envelope. So a message from anyone
without the key, or moved to another migration or to the other direction, is refused before
its CBOR is even parsed. The envelope is a map with exactly these keys:

    "v"  protocol version, 2
    "e"  the sending channel instance, 8 random bytes ("s" counts from 0 for each instance)
    "s"  sequence number, int >= 0, one per message the instance sends
    "k"  kind, matching ``[a-z][a-z0-9_.-]{0,63}``; the kinds starting "file." are reserved
    "b"  body, a map of str to plain data (null, bool, int, float, str, bytes, list, map)

No tags, indefinite lengths, duplicate keys or trailing bytes; nesting at most 16 deep; at
most ``MAX_CONTROL_BYTES`` (``MAX_MESSAGE_BYTES`` for a chunk). The sender is the last level
of the topic, not a field. A file travels as

    file.head   {"x": transfer id (16 bytes), "n": name, "c": chunk size, "z": size, if known}
    file.chunk  {"x", "i": index, "d": bytes i*c up to (i+1)*c of the file, never empty}
    file.end    {"x", "z": size, "m": number of chunks, "h": sha256 of the whole file}

The digest is always in the trailer, whatever the source: a stream knows it only at its end.

PeerError
├── MalformedMessage   a payload that is no valid message (the channel drops and counts it)
│   └── Unauthenticated  its tag is not the key's for this topic (forged, or moved)
├── PeerUnavailable    the broker cannot be reached, or the connection to it was lost
├── PeerTimeout        nothing arrived in time (also a TimeoutError)
├── ProtocolError      a valid message this side did not expect now (``received``)
└── TransferFailed     a file could not be received whole (``code``, see ``TRANSFER_CODES``)
"""

import hashlib
import hmac
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import cbor2

PROTOCOL_VERSION = 2
KEY_BYTES = 32
TAG_BYTES = 32
_TAG_CONTEXT = b"edgecloud-peer/2\n"
MAX_CHUNK_BYTES = 1 << 20
MAX_CONTROL_BYTES = 256 << 10
MAX_MESSAGE_BYTES = MAX_CHUNK_BYTES + 1024 + TAG_BYTES
MAX_DEPTH = 16
MAX_NAME_CHARS = 255
INSTANCE_BYTES = 8
TRANSFER_ID_BYTES = 16

FILE_HEAD = "file.head"
FILE_CHUNK = "file.chunk"
FILE_END = "file.end"
RESERVED_PREFIX = "file."
TRANSFER_CODES = frozenset(
    {
        "malformed",  # a file message with a bad body, or a trailer contradicting the head
        "bad_chunk",  # out of range, wrong length, or a repeat that differs from the first
        "too_large",  # over the receiver's max_file_bytes
        "checksum_mismatch",  # the chunks put together are not the file the trailer names
        "incomplete",  # the trailer came but some chunks did not, within the timeout
        "timeout",  # nothing of the file arrived within the timeout
        "unexpected_message",  # another file or a control message in the middle of the file
        "link_policy",  # (the sender's) a file kept off the link the channel fell over to
    }
)

_KIND = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_ENVELOPE_KEYS = frozenset({"v", "e", "s", "k", "b"})
_SEQ_LIMIT = 1 << 63


class PeerError(Exception):
    pass


class MalformedMessage(PeerError):
    pass


class Unauthenticated(MalformedMessage):
    pass


class PeerUnavailable(PeerError):
    pass


class PeerTimeout(PeerError, TimeoutError):
    def __init__(self, waited_for: str, timeout: float) -> None:
        super().__init__(f"no {waited_for} within {timeout:g}s")
        self.waited_for = waited_for
        self.timeout = timeout


class ProtocolError(PeerError):
    def __init__(self, received: "PeerMessage", expected: str) -> None:
        super().__init__(f"expected {expected}, got {received.kind} #{received.seq}")
        self.received = received
        self.expected = expected


class TransferFailed(PeerError):
    def __init__(self, code: str, message: str, *, received: "PeerMessage | None" = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.received = received
        """For ``unexpected_message``: what came instead (a peer's ``failed``, say)."""


@dataclass(frozen=True, slots=True)
class PeerMessage:
    src: str
    kind: str
    seq: int
    body: dict[str, Any]
    instance: bytes = field(default=b"", repr=False, compare=False)
    """The sending channel instance: with ``seq`` it names the message uniquely."""


class _RejectEveryTag(Mapping[int, Any]):
    """cbor2 decodes known tags (dates, regular expressions, shared references...) itself
    before any hook sees them; claiming a decoder for every tag keeps them all out."""

    def __getitem__(self, tag: int) -> Any:
        return _reject_tag

    def __contains__(self, tag: object) -> bool:
        return True

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _reject_tag(*_: Any) -> NoReturn:
    raise ValueError("CBOR tags are not allowed")


_NO_TAGS = _RejectEveryTag()


def check_kind(kind: str) -> None:
    if not _KIND.fullmatch(kind):
        raise ValueError(f"kind {kind[:80]!r} does not match {_KIND.pattern}")


def encode_message(
    *, key: bytes, topic: str, instance: bytes, seq: int, kind: str, body: dict[str, Any]
) -> bytes:
    """One message as its sender publishes it on ``topic``; ``ValueError`` if the receiver
    would drop it."""
    check_kind(kind)
    try:
        _check_plain(body, depth=1)
    except MalformedMessage as err:
        raise ValueError(f"body of {kind}: {err}") from err
    envelope = cbor2.dumps({"v": PROTOCOL_VERSION, "e": instance, "s": seq, "k": kind, "b": body})
    limit = MAX_MESSAGE_BYTES if kind == FILE_CHUNK else MAX_CONTROL_BYTES
    if len(envelope) + TAG_BYTES > limit:
        raise ValueError(f"{kind} message of {len(envelope) + TAG_BYTES} bytes, over {limit}")
    return seal(key, topic, envelope)


def decode_message(payload: bytes, *, key: bytes, topic: str, src: str) -> PeerMessage:
    """The message in ``payload`` as received on ``topic``, or :class:`MalformedMessage`
    (:class:`Unauthenticated` when its tag is wrong) saying what is wrong."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise MalformedMessage(f"{len(payload)} bytes, over {MAX_MESSAGE_BYTES}")
    tag, envelope = payload[:TAG_BYTES], payload[TAG_BYTES:]
    if not hmac.compare_digest(tag, _tag(key, topic, envelope)):
        raise Unauthenticated("not sealed with this migration's key for this topic")
    stream = io.BytesIO(envelope)
    decoder = cbor2.CBORDecoder(
        stream,
        semantic_decoders=_NO_TAGS,
        max_depth=MAX_DEPTH + 2,
        allow_indefinite=False,
        allow_duplicate_keys=False,
        strict_hashable_types=True,
    )
    try:
        decoded = decoder.decode()
    except Exception as err:  # hostile bytes raise more than CBORDecodeError (ValueError, ...)
        raise MalformedMessage(f"not CBOR: {err}") from err
    if stream.tell() != len(envelope):
        raise MalformedMessage(f"{len(envelope) - stream.tell()} bytes after the message")
    if not isinstance(decoded, dict) or decoded.keys() != _ENVELOPE_KEYS:
        raise MalformedMessage(f"not an envelope: {_describe(decoded)}")
    version, instance, seq, kind, body = (decoded[key] for key in ("v", "e", "s", "k", "b"))
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise MalformedMessage(f"protocol version {version!r}")
    if not isinstance(instance, bytes) or len(instance) != INSTANCE_BYTES:
        raise MalformedMessage("bad sender instance")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < _SEQ_LIMIT:
        raise MalformedMessage(f"bad sequence number {_describe(seq)}")
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise MalformedMessage(f"bad kind {_describe(kind)}")
    if kind != FILE_CHUNK and len(payload) > MAX_CONTROL_BYTES:
        raise MalformedMessage(f"{kind} message of {len(payload)} bytes, over {MAX_CONTROL_BYTES}")
    if not isinstance(body, dict):
        raise MalformedMessage(f"body is {_describe(body)}")
    _check_plain(body, depth=1)
    return PeerMessage(src=src, kind=kind, seq=seq, body=body, instance=instance)


def seal(key: bytes, topic: str, envelope: bytes) -> bytes:
    """``envelope`` as published on ``topic``: behind its tag."""
    return _tag(key, topic, envelope) + envelope


def _tag(key: bytes, topic: str, envelope: bytes) -> bytes:
    if len(key) != KEY_BYTES:
        raise ValueError(f"a migration key is {KEY_BYTES} bytes")
    mac = hmac.new(key, _TAG_CONTEXT + topic.encode() + b"\n", hashlib.sha256)
    mac.update(envelope)
    return mac.digest()


def _check_plain(value: object, *, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise MalformedMessage(f"nested deeper than {MAX_DEPTH}")
    if value is None or isinstance(value, bool | float | str | bytes):
        return
    if isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 64):  # what CBOR holds without a bignum tag
            raise MalformedMessage("integer out of range")
    elif isinstance(value, list):
        for item in value:
            _check_plain(item, depth=depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MalformedMessage(f"map key {_describe(key)}")
            _check_plain(item, depth=depth + 1)
    else:
        raise MalformedMessage(f"value of type {type(value).__name__}")


def _describe(value: object) -> str:
    return f"{type(value).__name__} {repr(value)[:60]}"


def chunks_for(size: int, chunk_bytes: int) -> int:
    return -(-size // chunk_bytes)


@dataclass(frozen=True, slots=True)
class FileHead:
    transfer: bytes
    name: str
    chunk_bytes: int
    size: int | None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"x": self.transfer, "n": self.name, "c": self.chunk_bytes}
        if self.size is not None:
            body["z"] = self.size
        return body

    @classmethod
    def parse(cls, body: dict[str, Any]) -> "FileHead":
        _expect_keys(FILE_HEAD, body, required={"x", "n", "c"}, optional=frozenset({"z"}))
        name = body["n"]
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
            _malformed(FILE_HEAD, "bad name")
        size = body.get("z")
        return cls(
            transfer=transfer_of(FILE_HEAD, body),
            name=name,
            chunk_bytes=_count(FILE_HEAD, body, "c", low=1, high=MAX_CHUNK_BYTES),
            size=None if size is None else _count(FILE_HEAD, body, "z"),
        )


@dataclass(frozen=True, slots=True)
class FileChunk:
    transfer: bytes
    index: int
    data: bytes

    def body(self) -> dict[str, Any]:
        return {"x": self.transfer, "i": self.index, "d": self.data}

    @classmethod
    def parse(cls, body: dict[str, Any]) -> "FileChunk":
        _expect_keys(FILE_CHUNK, body, required={"x", "i", "d"})
        data = body["d"]
        if not isinstance(data, bytes):
            _malformed(FILE_CHUNK, "data is not bytes")
        return cls(
            transfer=transfer_of(FILE_CHUNK, body),
            index=_count(FILE_CHUNK, body, "i"),
            data=data,
        )


@dataclass(frozen=True, slots=True)
class FileEnd:
    transfer: bytes
    size: int
    chunks: int
    sha256: bytes

    def body(self) -> dict[str, Any]:
        return {"x": self.transfer, "z": self.size, "m": self.chunks, "h": self.sha256}

    @classmethod
    def parse(cls, body: dict[str, Any]) -> "FileEnd":
        _expect_keys(FILE_END, body, required={"x", "z", "m", "h"})
        digest = body["h"]
        if not isinstance(digest, bytes) or len(digest) != hashlib.sha256().digest_size:
            _malformed(FILE_END, "bad sha256")
        return cls(
            transfer=transfer_of(FILE_END, body),
            size=_count(FILE_END, body, "z"),
            chunks=_count(FILE_END, body, "m"),
            sha256=digest,
        )


def _expect_keys(
    kind: str, body: dict[str, Any], *, required: set[str], optional: frozenset[str] = frozenset()
) -> None:
    keys = body.keys()
    if not required <= keys or not keys <= required | optional:
        _malformed(kind, f"keys {sorted(keys)}")


def transfer_of(kind: str, body: dict[str, Any]) -> bytes:
    """The transfer a file message belongs to, checked."""
    transfer = body.get("x")
    if not isinstance(transfer, bytes) or len(transfer) != TRANSFER_ID_BYTES:
        _malformed(kind, "bad transfer id")
    return transfer


def _count(kind: str, body: dict[str, Any], key: str, *, low: int = 0, high: int = 1 << 62) -> int:
    value = body[key]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        _malformed(kind, f"{key} is {_describe(value)}")
    return value


def _malformed(kind: str, message: str) -> NoReturn:
    raise TransferFailed("malformed", f"{kind}: {message}")


class FileAssembler:
    """One file put back together from its chunks in any order, then checked whole.

    :meth:`add` hands back the pieces that now continue the file in order, so a sink
    writes sequentially and the digest is computed on the way. Exact repeats are ignored;
    a repeat that differs, an index or length that cannot be, or more than
    ``max_file_bytes`` raise :class:`TransferFailed`.
    """

    def __init__(self, head: FileHead, *, max_file_bytes: int) -> None:
        if head.size is not None and head.size > max_file_bytes:
            raise TransferFailed("too_large", f"{head.size} bytes, over {max_file_bytes}")
        self.head = head
        self._max_file_bytes = max_file_bytes
        self._size = head.size
        self._chunks = None if head.size is None else chunks_for(head.size, head.chunk_bytes)
        self._end: FileEnd | None = None
        self._waiting: dict[int, bytes] = {}  # arrived ahead of a missing one
        # A short fingerprint of each chunk passed on tells an exact repeat from a conflict
        # without keeping the data; the file's own sha256 remains the real check.
        self._fingerprints: list[bytes] = []
        self._short_index: int | None = None  # only the last chunk may be short
        self._sha256 = hashlib.sha256()
        self.received_bytes = 0

    @property
    def transfer(self) -> bytes:
        return self.head.transfer

    @property
    def complete(self) -> bool:
        return self._end is not None and len(self._fingerprints) == self._end.chunks

    @property
    def ended(self) -> bool:
        """Whether the trailer came."""
        return self._end is not None

    @property
    def received_chunks(self) -> int:
        return len(self._fingerprints)

    @property
    def missing(self) -> int | None:
        """Chunks still to come, once the number of chunks is known."""
        return None if self._chunks is None else self._chunks - len(self._fingerprints)

    def add(self, chunk: FileChunk) -> list[bytes]:
        self._check_transfer(chunk.transfer)
        index, data = chunk.index, chunk.data
        if index < len(self._fingerprints):
            if _fingerprint(data) != self._fingerprints[index]:
                raise TransferFailed("bad_chunk", f"chunk {index} repeated with other data")
            return []
        if index in self._waiting:
            if self._waiting[index] != data:
                raise TransferFailed("bad_chunk", f"chunk {index} repeated with other data")
            return []
        self._check_chunk(index, len(data))
        if len(data) < self.head.chunk_bytes:
            self._short_index = index
        self._waiting[index] = data
        ready = []
        while len(self._fingerprints) in self._waiting:
            piece = self._waiting.pop(len(self._fingerprints))
            self._fingerprints.append(_fingerprint(piece))
            self._sha256.update(piece)
            self.received_bytes += len(piece)
            ready.append(piece)
        return ready

    def finish(self, end: FileEnd) -> None:
        """Takes the trailer, which may come before some chunks."""
        self._check_transfer(end.transfer)
        if self._end is not None:
            if end != self._end:
                _malformed(FILE_END, "a second, different trailer")
            return
        if end.size > self._max_file_bytes:
            raise TransferFailed("too_large", f"{end.size} bytes, over {self._max_file_bytes}")
        if self._size is not None and end.size != self._size:
            _malformed(FILE_END, f"size {end.size}, the head said {self._size}")
        if end.chunks != chunks_for(end.size, self.head.chunk_bytes):
            _malformed(FILE_END, f"{end.chunks} chunks cannot hold {end.size} bytes")
        self._end, self._size, self._chunks = end, end.size, end.chunks
        # What came before the size was known is checked against it now.
        if len(self._fingerprints) > end.chunks:
            raise TransferFailed("bad_chunk", f"more than the {end.chunks} chunks announced")
        for index, data in self._waiting.items():
            self._check_chunk(index, len(data))
        if self._short_index is not None and self._short_index != end.chunks - 1:
            raise TransferFailed("bad_chunk", f"chunk {self._short_index} is short")

    def sha256(self) -> bytes:
        """The digest of the complete file, once it is checked against the trailer."""
        end = self._end
        if end is None or not self.complete:
            raise TransferFailed("incomplete", f"{self.missing} chunks missing")
        if self.received_bytes != end.size:
            raise TransferFailed("bad_chunk", f"{self.received_bytes} bytes, not {end.size}")
        digest = self._sha256.digest()
        if digest != end.sha256:
            raise TransferFailed(
                "checksum_mismatch", f"sha256 {digest.hex()}, the sender's is {end.sha256.hex()}"
            )
        return digest

    def _check_transfer(self, transfer: bytes) -> None:
        if transfer != self.head.transfer:
            raise TransferFailed("unexpected_message", "a message of another transfer")

    def _check_chunk(self, index: int, length: int) -> None:
        chunk_bytes = self.head.chunk_bytes
        if not 0 < length <= chunk_bytes:
            raise TransferFailed("bad_chunk", f"chunk {index} of {length} bytes ({chunk_bytes})")
        if index * chunk_bytes + length > self._max_file_bytes:
            raise TransferFailed("too_large", f"chunk {index} ends past {self._max_file_bytes}")
        if self._chunks is not None and self._size is not None:
            if index >= self._chunks:
                raise TransferFailed("bad_chunk", f"chunk {index} of {self._chunks}")
            last = self._size - (self._chunks - 1) * chunk_bytes
            expected = last if index == self._chunks - 1 else chunk_bytes
            if length != expected:
                raise TransferFailed("bad_chunk", f"chunk {index}: {length} bytes, not {expected}")
        elif self._short_index is not None and self._short_index != index:
            if length < chunk_bytes or index > self._short_index:
                raise TransferFailed("bad_chunk", f"chunk {index} after the short last one")
        elif length < chunk_bytes and any(waiting > index for waiting in self._waiting):
            raise TransferFailed("bad_chunk", f"chunk {index} is short but not the last")


def _fingerprint(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()
