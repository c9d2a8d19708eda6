"""The tenant's live events (``GET /api/v1/events``, server-sent events), followed in a
background thread while a command waits for its answer.

Following is best effort: the events only decorate a command's output, so a stream that cannot
be opened, breaks or says something unexpected ends quietly and never fails the command.
"""

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from .client import Client, Stream

logger = logging.getLogger(__name__)

CONNECT_WAIT_S = 2.0
"""How long a command waits for the stream to open before it sends its request anyway."""
STOP_WAIT_S = 2.0


@dataclass(frozen=True)
class Event:
    kind: str
    data: Any


def parse(lines: Iterable[str]) -> Iterator[Event]:
    """Events from the lines of a stream whose data is JSON; an event without data or whose
    data is not JSON is skipped."""
    for event in messages(lines):
        if not event.data:
            continue
        try:
            yield Event(event.kind, json.loads(event.data))
        except ValueError:
            logger.debug("skipped an event whose data is not JSON: %s", event.kind)


def messages(lines: Iterable[str]) -> Iterator[Event]:
    """Events from the lines of a stream, their data as text: ``event:`` and ``data:`` lines
    up to a blank line, several ``data:`` lines joined by newlines; comments (``:``
    keepalives) skipped. An event named but without data (``event: end``) is kept."""
    kind, named, data = "message", False, list[str]()
    for line in lines:
        if not line:
            if data or named:
                yield Event(kind, "\n".join(data))
            kind, named, data = "message", False, list[str]()
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            kind, named = value, True
        elif field == "data":
            data.append(value)


class Follower:
    """Hand every event to ``handle`` in a daemon thread, from entering the block until
    leaving it; the thread owns ``client`` and closes it."""

    def __init__(self, client: Client, handle: Callable[[Event], None]) -> None:
        self._client = client
        self._handle = handle
        self._connected = threading.Event()
        self._stopped = threading.Event()
        self._stream: Stream | None = None
        # A daemon, so that a stream we could not interrupt never keeps the CLI from exiting.
        self._thread = threading.Thread(target=self._follow, name="edgecloud-events", daemon=True)

    def __enter__(self) -> "Follower":
        self._thread.start()
        # Progress sent before the stream is open would be lost: give it a moment.
        self._connected.wait(CONNECT_WAIT_S)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopped.set()
        stream = self._stream
        if stream is not None:
            stream.interrupt()
        self._thread.join(STOP_WAIT_S)

    def _follow(self) -> None:
        try:
            with self._client, self._client.events() as stream:
                self._stream = stream
                self._connected.set()
                for event in parse(stream.lines()):
                    if self._stopped.is_set():
                        return
                    self._handle(event)
        except Exception as err:
            # Whatever went wrong, the command goes on without its progress lines.
            if not self._stopped.is_set():
                logger.debug("stopped following events: %s", err)
        finally:
            self._connected.set()
