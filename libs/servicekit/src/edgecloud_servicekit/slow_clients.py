"""Deadlines uvicorn does not have: for a request's head, and for a body that stops coming.

uvicorn closes a connection that stays idle after an answer (``timeout_keep_alive``), but
the keep-alive timer stops at the first byte of the next request, and a connection that
never sends anything has no timer at all. A client that opens connections and trickles
header bytes (slowloris), or sends nothing, holds each one for ever, and with
``limit_concurrency`` of them it locks every other client out. A body that stops midway
is held as long.

:class:`GuardedHttpProtocol` is uvicorn's own httptools protocol with two more timers:

- a request's head (request line and headers) must be complete ``head_timeout_s`` after
  the connection opened, or after its first byte on a kept-alive connection (the idle
  time before it is keep-alive's);
- while a request's body is being received, bytes must keep coming: ``body_stall_s``
  without any (while we are reading, not while flow control has paused us) ends it.

Either closes the connection. Keep-alive is untouched. A request head is also limited to
``max_head_bytes`` (431), which httptools does not limit at all.
"""

import asyncio
import logging
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)


class HeadTooLarge(Exception):
    """A request head over ``max_head_bytes`` (httptools itself sets no limit)."""


class GuardedHttpProtocol(HttpToolsProtocol):
    head_timeout_s: ClassVar[float] = 10.0
    body_stall_s: ClassVar[float] = 60.0
    max_head_bytes: ClassVar[int] = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None
        self._in_message = False
        self._head_complete = False
        self._head_bytes = 0
        self._head_too_large = False
        self._upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._await_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # The first bytes after an answer (the idle time before them is keep-alive's).
        if self._head_deadline is None and self._awaiting_head():
            self._await_head()

    def _awaiting_head(self) -> bool:
        if self._upgraded or self.transport.is_closing():
            return False
        if self._in_message:
            return not self._head_complete
        return self.cycle is None or self.cycle.response_complete

    def on_message_begin(self) -> None:
        self._in_message, self._head_complete, self._head_bytes = True, False, 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            self._head_too_large = True
            # The parser fails the data it was fed; uvicorn then answers and closes.
            raise HeadTooLarge()

    def send_400_response(self, msg: str) -> None:
        if not self._head_too_large:
            super().send_400_response(msg)
            return
        detail = f"the request line and headers are over {self.max_head_bytes} bytes"
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(detail), detail.encode())
        )
        self.transport.close()

    def on_headers_complete(self) -> None:
        self._head_complete = True
        self._cancel_head()
        # The body clock runs until the message is complete: at once when it has none.
        self._restart_body_clock()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._restart_body_clock()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._cancel_body()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._upgraded = True
        self._cancel_head()
        self._cancel_body()
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head()
        self._cancel_body()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._cancel_head()
        self._head_deadline = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _restart_body_clock(self) -> None:
        self._cancel_body()
        self._body_deadline = self.loop.call_later(self.body_stall_s, self._body_stalled)

    def _cancel_body(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            logger.info(
                "closing the connection of %s: no request head within %s s",
                _peer(self.client),
                self.head_timeout_s,
            )
            self.transport.close()

    def _body_stalled(self) -> None:
        self._body_deadline = None
        if self.flow.read_paused:
            # The wait is ours (the service has not taken what came), not the client's.
            self._restart_body_clock()
            return
        if not self.transport.is_closing():
            logger.info(
                "closing the connection of %s: its request body stalled for %s s",
                _peer(self.client),
                self.body_stall_s,
            )
            self.transport.close()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "a client"


def guarded_http_protocol(*, head_timeout_s: float, body_stall_s: float) -> type[HttpToolsProtocol]:
    """The protocol class to give uvicorn as ``http=``, with these deadlines."""
    return type(
        "GuardedHttpProtocol",
        (GuardedHttpProtocol,),
        {"head_timeout_s": head_timeout_s, "body_stall_s": body_stall_s},
    )
