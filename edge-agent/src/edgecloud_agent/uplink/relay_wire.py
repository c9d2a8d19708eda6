"""What the border-router relay checks on the wire: the upgrade request and frame headers.

Pure functions over bytes, apart from reading a head or a frame header from a stream, so
that each rule stands alone. Frames follow RFC 6455 section 5.2; no extension is ever
negotiated through the relay, so every RSV bit must be zero.
"""

import asyncio
import base64
import binascii
import re
from dataclasses import dataclass, field
from enum import IntEnum
from http import HTTPStatus

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")
_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3})(?: [^\r\n]*)?")

# What reaches the router besides the rewritten Host: the WebSocket handshake itself.
# Everything else is dropped, notably Sec-WebSocket-Extensions (frames must stay plain for
# the relay to check them) and Forwarded / X-Forwarded-* (a neighbour does not get to say
# where it connects from).
_FORWARDED_FIELDS = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "origin",
        "user-agent",
    }
)
_SINGLE_FIELDS = ("host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version")

MAX_CONTROL_PAYLOAD = 125


class Refused(Exception):
    """The request is not one the relay forwards: answer ``status`` and close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    target: str
    fields: tuple[tuple[str, str], ...]
    """The header fields forwarded to the router, as the neighbour wrote them."""


def http_answer(status: int) -> bytes:
    """A complete, empty HTTP response that ends the connection."""
    phrase = HTTPStatus(status).phrase
    return f"HTTP/1.1 {status} {phrase}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """An HTTP message head up to its blank line, no longer than the reader's limit."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as err:
        raise Refused(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "head too large") from err
    except asyncio.IncompleteReadError as err:
        raise Refused(HTTPStatus.BAD_REQUEST, "connection closed inside the head") from err


def parse_upgrade(head: bytes, *, path: str) -> UpgradeRequest:
    """The WebSocket upgrade in ``head`` if it asks for exactly ``path``, else :class:`Refused`."""
    try:
        request_line, *lines = head.decode("ascii").removesuffix("\r\n\r\n").split("\r\n")
    except UnicodeDecodeError as err:
        raise Refused(HTTPStatus.BAD_REQUEST, "head is not ASCII") from err
    parts = request_line.split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]):
        raise Refused(HTTPStatus.BAD_REQUEST, f"no request line: {request_line[:40]!r}")
    method, target, version = parts
    if method == "CONNECT" or not target.startswith("/"):
        raise Refused(HTTPStatus.FORBIDDEN, f"proxy request {method} {target[:80]!r}")
    if version != "HTTP/1.1":
        raise Refused(HTTPStatus.BAD_REQUEST, f"version {version[:20]!r}")
    if method != "GET":
        raise Refused(HTTPStatus.METHOD_NOT_ALLOWED, f"method {method[:20]!r}")
    if target != path:
        raise Refused(HTTPStatus.NOT_FOUND, f"path {target[:80]!r}")
    fields = _header_fields(lines)
    single = {name: _single(fields, name) for name in _SINGLE_FIELDS}
    if (single["upgrade"] or "").lower() != "websocket":
        raise Refused(HTTPStatus.BAD_REQUEST, "not a WebSocket upgrade")
    connection = {token.strip().lower() for token in (single["connection"] or "").split(",")}
    if "upgrade" not in connection:
        raise Refused(HTTPStatus.BAD_REQUEST, "Connection does not say upgrade")
    if not _valid_key(single["sec-websocket-key"] or ""):
        raise Refused(HTTPStatus.BAD_REQUEST, "bad Sec-WebSocket-Key")
    if single["sec-websocket-version"] != "13":
        raise Refused(HTTPStatus.BAD_REQUEST, "Sec-WebSocket-Version is not 13")
    kept = tuple((name, value) for name, value in fields if name.lower() in _FORWARDED_FIELDS)
    return UpgradeRequest(target=target, fields=kept)


def _header_fields(lines: list[str]) -> list[tuple[str, str]]:
    fields = []
    for line in lines:
        name, colon, value = line.partition(":")
        # A name with spaces also refuses obsolete line folding (a line starting blank).
        if not colon or not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
            raise Refused(HTTPStatus.BAD_REQUEST, f"malformed header line {line[:40]!r}")
        fields.append((name, value.strip(" \t")))
    return fields


def _single(fields: list[tuple[str, str]], name: str) -> str | None:
    values = [value for field_name, value in fields if field_name.lower() == name]
    if len(values) > 1:
        raise Refused(HTTPStatus.BAD_REQUEST, f"{name} given twice")
    return values[0] if values else None


def _valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        return False


def forwarded_head(request: UpgradeRequest, *, host: str) -> bytes:
    """The request head as the router gets it: same target, Host rewritten to ``host``."""
    lines = [f"GET {request.target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in request.fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def response_status(head: bytes) -> int:
    """The status code of an HTTP/1.1 response head."""
    match = _STATUS_LINE.fullmatch(head.split(b"\r\n", 1)[0])
    if match is None:
        raise Refused(HTTPStatus.BAD_GATEWAY, "the router's answer is not HTTP/1.1")
    return int(match[1])


class Opcode(IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


_OPCODES = frozenset(Opcode)


class CloseCode(IntEnum):
    PROTOCOL_ERROR = 1002
    MESSAGE_TOO_BIG = 1009


@dataclass(frozen=True, slots=True)
class FrameHeader:
    raw: bytes
    """The header as received, masking key included: forwarded unchanged."""
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    length: int


async def read_frame_header(reader: asyncio.StreamReader) -> FrameHeader | None:
    """The next frame's header; None when the stream ends cleanly between frames.

    Raises :class:`asyncio.IncompleteReadError` when it ends inside a header.
    """
    try:
        start = await reader.readexactly(2)
    except asyncio.IncompleteReadError as err:
        if err.partial:
            raise
        return None
    first, second = start
    extended = await reader.readexactly({126: 2, 127: 8}.get(second & 0x7F, 0))
    mask_key = await reader.readexactly(4 if second & 0x80 else 0)
    return FrameHeader(
        raw=start + extended + mask_key,
        fin=bool(first & 0x80),
        rsv=first & 0x70,
        opcode=first & 0x0F,
        masked=bool(second & 0x80),
        length=int.from_bytes(extended, "big") if extended else second & 0x7F,
    )


@dataclass(frozen=True, slots=True)
class Violation:
    code: CloseCode
    reason: str


@dataclass(slots=True)
class ClientFrames:
    """Checks a client's frames in order (a fragmented message spans several of them)."""

    max_payload: int
    _in_message: bool = field(default=False, init=False)

    def check(self, frame: FrameHeader) -> Violation | None:
        if not frame.masked:
            return Violation(CloseCode.PROTOCOL_ERROR, "unmasked client frame")
        if frame.rsv:
            return Violation(CloseCode.PROTOCOL_ERROR, "RSV bits set, no extension negotiated")
        if frame.opcode not in _OPCODES:
            return Violation(CloseCode.PROTOCOL_ERROR, f"unknown opcode {frame.opcode:#x}")
        if frame.opcode >= Opcode.CLOSE:
            if not frame.fin or frame.length > MAX_CONTROL_PAYLOAD:
                return Violation(CloseCode.PROTOCOL_ERROR, "fragmented or long control frame")
            return None  # control frames may come between the fragments of a message
        if frame.length > self.max_payload:
            return Violation(
                CloseCode.MESSAGE_TOO_BIG, f"{frame.length}-byte frame, over {self.max_payload}"
            )
        if (frame.opcode == Opcode.CONTINUATION) != self._in_message:
            return Violation(CloseCode.PROTOCOL_ERROR, "fragments out of order")
        self._in_message = not frame.fin
        return None


def close_frame(code: CloseCode) -> bytes:
    """A server's (unmasked) close frame with ``code`` and no reason text."""
    return bytes([0x80 | Opcode.CLOSE, 2]) + int(code).to_bytes(2, "big")
