"""Containers' output shipped to the cloud's storage as it is produced, so that it outlives
its node: read after a migration (the old node's lines, then the new one's), a node loss or
the container's removal.

For each container of ours the shipper follows Docker's log stream from the container's
cursor, cuts the lines into segments (by size and by time) and spools each segment with the
cursor moved past it (:mod:`..state.log_spool`); an uploader sends spooled segments in order,
over HTTP with a grant for the container (``edge.orchestrator.log_stream``), and forgets
each once storage has it. A restart, a link outage or a full spool only delays lines:
nothing is read twice or skipped. Logs are bulk: on the slow mesh they are held (the
uplink's bulk gate) and go when the WAN is back. Before the node removes a container, what
is left of its output is spooled (:meth:`LogShipper.seal`).
"""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol

from edgecloud_contracts import errors, uris
from edgecloud_contracts.containers import ContainerReport, LogLine
from edgecloud_contracts.log_segments import (
    MAX_LINE_CHARS,
    MAX_SEGMENT_LINES,
    SEGMENT_PATH,
    LogSegment,
    ShippedLine,
)

from ..runtime.docker import DockerRuntime
from ..runtime.errors import ContainerNotFound, RuntimeFailure
from ..state.log_spool import Cursor, LogSpool, Spooled
from ..uplink.errors import CallFailed, UplinkError
from .transfers import CloudFiles, UploadFailed

logger = logging.getLogger(__name__)

LINE_OVERHEAD = 80
"""Bytes a line costs in a segment beyond its text (its stamp, stream and JSON)."""
GRANT_MARGIN_S = 60.0
ROOM_CHECK_S = 1.0
REFUSED_RETRY_S = 5.0
GIVE_UP_AFTER_S = 600.0
"""A container the cloud keeps refusing a grant for this long: its segments are dropped."""
_RETRY_S = (1.0, 30.0)
SEAL_ALL = 1_000_000_000
"""``tail`` for Docker: every line since the cursor."""

Gate = Callable[[], Awaitable[None]]


class Caller(Protocol):
    async def call(self, uri: str, *args: object, timeout: float) -> Any: ...


class _Segments:
    """Lines gathered into segments from one cursor on."""

    def __init__(self, container_id: str, cursor: Cursor, max_bytes: int) -> None:
        self.container_id = container_id
        self.cursor = cursor
        self._max_bytes = max_bytes
        self._lines: list[ShippedLine] = []
        self._bytes = 0
        self._to_skip = cursor.skip

    def fresh(self, line: LogLine) -> bool:
        """Whether ``line`` comes after the cursor (Docker's ``since`` repeats its instant)."""
        if line.at < self.cursor.at:
            return False
        if line.at == self.cursor.at and self._to_skip > 0:
            self._to_skip -= 1
            return False
        return True

    def add(self, line: LogLine) -> bool:
        """Take ``line``; True when the segment is full and should go."""
        text = line.text[:MAX_LINE_CHARS]
        self._lines.append(ShippedLine(at=line.at, stream=line.stream, text=text))
        self._bytes += len(text.encode()) + LINE_OVERHEAD
        return self._bytes >= self._max_bytes or len(self._lines) >= MAX_SEGMENT_LINES

    def __bool__(self) -> bool:
        return bool(self._lines)

    def cut(self) -> tuple[LogSegment, Cursor]:
        """The gathered segment and the cursor after it; the next starts empty."""
        segment = LogSegment(
            container_id=self.container_id,
            start_skip=self.cursor.start_skip(self._lines[0].at),
            lines=self._lines,
        )
        self.cursor = self.cursor.after(segment)
        self._lines, self._bytes = [], 0
        return segment, self.cursor


class LogShipper:
    def __init__(
        self,
        *,
        runtime: DockerRuntime,
        spool: LogSpool,
        uplink: Caller,
        files: CloudFiles,
        gate: Gate,
        segment_bytes: int = 64 << 10,
        segment_s: float = 2.0,
        timeout_s: float = 10.0,
    ) -> None:
        self._runtime = runtime
        self._spool = spool
        self._uplink = uplink
        self._files = files
        self._gate = gate
        self._segment_bytes = segment_bytes
        self._segment_s = segment_s
        self._timeout = timeout_s
        self._following: dict[str, asyncio.Task[None]] = {}
        """Per container id: the follower of its current Docker container."""
        self._caught_up: set[str] = set()
        """Docker ids of stopped containers read to their end in this run."""
        self._locks: dict[str, asyncio.Lock] = {}
        self._grants: dict[str, tuple[str, float]] = {}
        self._refused: dict[str, tuple[float, float]] = {}
        """Containers the cloud gave no grant for: since when, and when to ask again."""
        self._spooled = asyncio.Event()
        self._room = asyncio.Event()
        self.shipped = 0
        self.dropped = 0

    def observe(self, report: ContainerReport) -> None:
        """A container's state: follow the output of ours that run; read stopped ones to
        their end once (their output may have come while the agent was down)."""
        container_id, docker_id = report.container_id, report.docker_id
        if container_id is None or report.state in ("removed", "created"):
            return
        running = report.state in ("running", "restarting", "paused")
        if not running and docker_id in self._caught_up:
            return
        current = self._following.get(container_id)
        if current is not None and not current.done():
            return
        if not running:
            self._caught_up.add(docker_id)
        task = asyncio.create_task(
            self._follow(container_id, docker_id), name=f"logs {container_id}"
        )
        self._following[container_id] = task
        task.add_done_callback(lambda done: self._forget_follower(container_id, done))

    def _forget_follower(self, container_id: str, task: asyncio.Task[None]) -> None:
        if self._following.get(container_id) is task:
            del self._following[container_id]

    async def seal(self, docker_name: str, container_id: str) -> None:
        """Spool what is left of the container's output before the node removes it."""
        follower = self._following.pop(container_id, None)
        if follower is not None:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
        async with self._lock(container_id):
            segments = _Segments(
                container_id, self._spool.cursor(container_id), self._segment_bytes
            )
            try:
                lines, _ = await self._runtime.logs(
                    docker_name,
                    container_id=container_id,
                    tail=SEAL_ALL,
                    since=segments.cursor.at - timedelta(microseconds=1),
                )
            except ContainerNotFound:
                return  # never made, or gone already: nothing left to take
            except RuntimeFailure as err:
                logger.warning("the last lines of %s are not shipped: %s", docker_name, err)
                return
            for line in lines:
                if segments.fresh(line) and segments.add(line):
                    self._put(*segments.cut())
            if segments:
                self._put(*segments.cut())

    async def close(self) -> None:
        tasks = list(self._following.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _segments_from_cursor(self, container_id: str) -> _Segments:
        return _Segments(container_id, self._spool.cursor(container_id), self._segment_bytes)

    def _lock(self, container_id: str) -> asyncio.Lock:
        return self._locks.setdefault(container_id, asyncio.Lock())

    def _put(self, segment: LogSegment, cursor: Cursor) -> None:
        self._spool.put(segment, cursor)
        self._spooled.set()

    async def _room_in_spool(self) -> None:
        while self._spool.full:
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                # Woken by an upload; looked at again now and then all the same.
                await asyncio.wait_for(self._room.wait(), ROOM_CHECK_S)

    async def _follow(self, container_id: str, docker_id: str) -> None:
        async with self._lock(container_id):
            await self._fetch_grant(container_id)
            segments = _Segments(
                container_id, self._spool.cursor(container_id), self._segment_bytes
            )
            lines: asyncio.Queue[LogLine | None] = asyncio.Queue(maxsize=MAX_SEGMENT_LINES)
            reader = asyncio.create_task(
                self._read(docker_id, segments.cursor, lines), name=f"log reader {docker_id}"
            )
            try:
                await self._gather(segments, lines)
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def _read(
        self, docker_id: str, cursor: Cursor, lines: "asyncio.Queue[LogLine | None]"
    ) -> None:
        try:
            # A microsecond early: the stamps were cut to microseconds from nanoseconds.
            since = cursor.at - timedelta(microseconds=1)
            async for line in self._runtime.follow_logs(docker_id, since=since):
                await lines.put(line)
        except RuntimeFailure as err:
            logger.debug("stopped following the output of %s: %s", docker_id, err)
        finally:
            await lines.put(None)

    async def _gather(self, segments: _Segments, lines: "asyncio.Queue[LogLine | None]") -> None:
        """Cut segments from the lines as they come: full, or ``segment_s`` after their
        first line; the last one when the output ends."""
        deadline: float | None = None
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                line = await asyncio.wait_for(lines.get(), wait)
            except TimeoutError:
                await self._spool_cut(segments)
                deadline = None
                continue
            if line is None:
                await self._spool_cut(segments)
                return
            if not segments.fresh(line):
                continue
            if segments.add(line):
                await self._spool_cut(segments)
                deadline = None
            elif deadline is None:
                deadline = time.monotonic() + self._segment_s

    async def _spool_cut(self, segments: _Segments) -> None:
        if segments:
            await self._room_in_spool()
            self._put(*segments.cut())

    async def run(self) -> None:
        """Send spooled segments in order, for as long as the agent runs."""
        delay = _RETRY_S[0]
        while True:
            now = time.monotonic()
            waiting = {cid: at for cid, (_, at) in self._refused.items() if at > now}
            entry = self._spool.oldest(leaving_out=waiting)
            if entry is None:
                self._spooled.clear()
                wake = min(waiting.values(), default=None)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._spooled.wait(), None if wake is None else wake - now
                    )
                continue
            await self._gate()
            try:
                await self._ship(entry)
                delay = _RETRY_S[0]
            except (UplinkError, UploadFailed, OSError, TimeoutError) as err:
                logger.info("logs not shipped yet: %s", err)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, _RETRY_S[1])

    async def _ship(self, entry: Spooled) -> None:
        try:
            url = await self._grant(entry.container_id)
        except CallFailed as err:
            if err.error != errors.NOT_FOUND:
                raise
            self._not_placed_here(entry.container_id, err)
            return
        status, answer = await self._files.post_json(url, entry.body, suffix=f"/{SEGMENT_PATH}")
        if status == 200:
            self._spool.remove(entry.seq)
            self._refused.pop(entry.container_id, None)
            self.shipped += 1
        elif status in (401, 403) and b"grant_expired" in answer:
            self._grants.pop(entry.container_id, None)
            return
        elif 400 <= status < 500 and status not in (408, 429):
            # Refused for good (it would be refused again): not worth holding the rest up.
            logger.error(
                "storage refused a log segment of %s (%d): %s",
                entry.container_id,
                status,
                answer[:300].decode(errors="replace"),
            )
            self._spool.remove(entry.seq)
            self.dropped += 1
        else:
            raise UploadFailed("upload_failed", f"storage answered {status}")
        self._room.set()

    def _not_placed_here(self, container_id: str, err: CallFailed) -> None:
        """The cloud gives no grant: the container is not (or not yet: a migration's target
        runs it a moment before the cloud records the move) placed on this node. Its
        segments wait and are asked for again; after a while nobody will take them."""
        now = time.monotonic()
        first = self._refused.get(container_id, (now, now))[0]
        if now - first < GIVE_UP_AFTER_S:
            self._refused[container_id] = (first, now + REFUSED_RETRY_S)
            return
        del self._refused[container_id]
        dropped = self._spool.drop_container(container_id)
        self.dropped += dropped
        logger.warning("dropped %d log segments of %s: %s", dropped, container_id, err)
        self._room.set()

    async def _fetch_grant(self, container_id: str) -> None:
        """Ask for the container's grant early (best effort): a node that moves the
        container away still holds one for the lines it has left to ship."""
        try:
            await self._grant(container_id)
        except (UplinkError, OSError, TimeoutError) as err:
            logger.debug("no log grant for %s yet: %s", container_id, err)

    async def _grant(self, container_id: str) -> str:
        held = self._grants.get(container_id)
        if held is not None and held[1] > time.monotonic() + GRANT_MARGIN_S:
            return held[0]
        answer = await self._uplink.call(uris.LOG_STREAM, container_id, timeout=self._timeout)
        url = str(answer["url"])
        self._grants[container_id] = (url, time.monotonic() + float(answer["expires_in_s"]))
        return url
