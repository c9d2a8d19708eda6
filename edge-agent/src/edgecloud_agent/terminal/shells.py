"""Interactive shells: a terminal inside a container, streamed to the gateway.

``shell.open`` starts the process (Docker exec with a TTY, as the container's own user,
inside its hardening) and streams its output as progressive results of that same call;
``shell.input`` brings keystrokes, resizes and acknowledgements (frames and limits in
:mod:`edgecloud_contracts.shell`).

- Back-pressure: output goes out only while less than the window is unacknowledged. A
  user who stops reading stops the reads from Docker, which stops the process.
- The slow mesh: the window shrinks and output waits a moment to leave in fewer, larger
  frames, so a screenful is a few messages, not one per character.
- No orphans: a session that hears nothing from its gateway for its lease ends, and
  so does its process.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from edgecloud_contracts import errors
from edgecloud_contracts.shell import (
    ACK,
    CLOSE,
    INPUT,
    OUTPUT,
    READY,
    RESIZE,
    BadFrames,
    EndReason,
    InputFrame,
    ShellEnd,
    ShellOpen,
    parse_input_frames,
)

from ..runtime.docker import DockerRuntime, ExecStream
from ..runtime.errors import ContainerNotFound, RuntimeFailure
from ..uplink.errors import CommandRejected, UplinkError

logger = logging.getLogger(__name__)

Progress = Callable[..., None]

SLOW_LINK = "lowpan"
FRAME_BYTES = 16 * 1024
SLOW_FRAME_BYTES = 2 * 1024
SLOW_WINDOW_BYTES = 4 * 1024
SLOW_GATHER_S = 0.1
"""On the mesh, output waits this long for more before it leaves."""


class ShellSessions:
    """The shells open on this node, by session id."""

    def __init__(
        self, runtime: DockerRuntime, *, link: Callable[[], str], max_sessions: int
    ) -> None:
        self._runtime = runtime
        self._link = link
        self._max_sessions = max_sessions
        self._open: dict[str, _Shell] = {}
        self._none_open = asyncio.Event()
        self._none_open.set()

    @property
    def count(self) -> int:
        return len(self._open)

    async def open(self, request: ShellOpen, progress: Progress | None) -> ShellEnd:
        if progress is None:
            raise CommandRejected(
                errors.INVALID_ARGUMENT, "shell.open streams its output: call it for progress"
            )
        if request.session_id in self._open:
            raise CommandRejected(
                errors.FAILED_PRECONDITION, f"shell {request.session_id} is already open"
            )
        if len(self._open) >= self._max_sessions:
            raise CommandRejected(
                errors.UNAVAILABLE, f"this node has {self._max_sessions} shells open already"
            )
        slow = self._link() == SLOW_LINK
        try:
            process = await self._runtime.attach_exec(
                request.docker_name,
                container_id=request.container_id,
                argv=list(request.cmd),
                tty=request.tty,
                stdin=True,
                size=(request.cols, request.rows) if request.tty else None,
            )
        except ContainerNotFound as err:
            raise CommandRejected(errors.NOT_FOUND, err.message) from err
        except RuntimeFailure as err:
            raise CommandRejected(errors.UNAVAILABLE, err.message) from err
        shell = _Shell(request, process, progress, link=self._link(), slow=slow)
        self._open[request.session_id] = shell
        self._none_open.clear()
        logger.info("shell %s opened in %s", request.session_id, request.docker_name)
        try:
            end = await shell.run()
        finally:
            del self._open[request.session_id]
            if not self._open:
                self._none_open.set()
        logger.info(
            "shell %s in %s ended: %s (exit %s)",
            request.session_id,
            request.docker_name,
            end.reason,
            end.exit_code,
        )
        return end

    async def input(self, session_id: Any, raw_frames: Any) -> None:
        shell = self._open.get(session_id) if isinstance(session_id, str) else None
        if shell is None:
            raise CommandRejected(errors.NOT_FOUND, "no such shell on this node")
        try:
            frames = parse_input_frames(raw_frames)
        except BadFrames as err:
            shell.end("error")
            raise CommandRejected(errors.INVALID_ARGUMENT, str(err)) from err
        await shell.feed(frames)

    async def close_all(self, timeout_s: float = 10.0) -> None:
        """End every shell and wait for them to be gone (the agent is stopping)."""
        for shell in list(self._open.values()):
            shell.end("closed")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._none_open.wait()


class _Shell:
    def __init__(
        self,
        request: ShellOpen,
        process: ExecStream,
        progress: Progress,
        *,
        link: str,
        slow: bool,
    ) -> None:
        self._request = request
        self._process = process
        self._progress = progress
        self._link = link
        self._slow = slow
        self._window = (
            min(request.window_bytes, SLOW_WINDOW_BYTES) if slow else request.window_bytes
        )
        self._frame_bytes = SLOW_FRAME_BYTES if slow else FRAME_BYTES
        self._sent = 0
        self._acknowledged = 0
        self._credit = asyncio.Event()
        self._heard = asyncio.Event()
        self._ended = asyncio.Event()
        self._reason: EndReason | None = None
        self._output: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1)

    def end(self, reason: EndReason) -> None:
        if self._reason is None:
            self._reason = reason
        self._ended.set()

    async def run(self) -> ShellEnd:
        try:
            self._progress(READY, {"link": self._link, "window": self._window})
        except UplinkError:
            self.end("error")
        tasks = [
            asyncio.create_task(self._read_output()),
            asyncio.create_task(self._send_output()),
            asyncio.create_task(self._watch_lease()),
        ]
        try:
            await self._ended.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            reason = self._reason or "closed"
            # A shell closed under its jobs takes them along; one that exited leaves its
            # detached ones be, as a terminal would.
            code = await asyncio.shield(self._process.finish(whole_tree=reason != "exited"))
        return ShellEnd(exit_code=code if reason == "exited" else None, reason=reason)

    async def feed(self, frames: list[InputFrame]) -> None:
        self._heard.set()
        size: tuple[int, int] | None = None
        for frame in frames:
            if frame[0] == INPUT:
                try:
                    await self._process.write(frame[1])
                except RuntimeFailure as err:
                    logger.debug("shell %s: %s", self._request.session_id, err)
            elif frame[0] == RESIZE:
                size = (frame[1], frame[2])  # a storm of resizes: only the last counts
            elif frame[0] == ACK:
                self._acknowledged = min(self._sent, self._acknowledged + frame[1])
                self._credit.set()
            elif frame[0] == CLOSE:
                self.end("closed")
        if size is not None and self._request.tty:
            try:
                await self._process.resize(*size)
            except RuntimeFailure as err:
                logger.debug("shell %s: resize: %s", self._request.session_id, err)

    async def _read_output(self) -> None:
        # One chunk read ahead at most: the rest waits in Docker's socket.
        while (chunk := await self._process.read()) is not None:
            await self._output.put(chunk)
        await self._output.put(None)

    async def _send_output(self) -> None:
        pending = b""
        while True:
            while self._sent - self._acknowledged >= self._window:
                self._credit.clear()
                await self._credit.wait()
            if not pending:
                chunk = await self._output.get()
                if chunk is None:
                    self.end("exited")
                    return
                pending = await self._gather(chunk) if self._slow else chunk
            room = min(self._frame_bytes, self._window - (self._sent - self._acknowledged))
            piece, pending = pending[:room], pending[room:]
            try:
                self._progress(OUTPUT, piece)
            except UplinkError:
                self.end("error")
                return
            self._sent += len(piece)

    async def _gather(self, first: bytes) -> bytes:
        """More output for up to :data:`SLOW_GATHER_S`, within the window's room."""
        gathered = bytearray(first)
        room = max(self._window - (self._sent - self._acknowledged), len(first))
        deadline = time.monotonic() + SLOW_GATHER_S
        while len(gathered) < room and (left := deadline - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(left):
                    more = await self._output.get()
            except TimeoutError:
                break
            if more is None:
                # Put the end back: it is seen after this output is sent.
                self._output.put_nowait(None)
                break
            gathered += more
        return bytes(gathered)

    async def _watch_lease(self) -> None:
        lease = self._request.lease_s
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can miss a cancellation
        # that comes as its inner wait completes, and the session would never end.
        while True:
            try:
                async with asyncio.timeout(lease):
                    await self._heard.wait()
            except TimeoutError:
                break
            self._heard.clear()
        logger.warning("shell %s: nothing heard for %gs", self._request.session_id, lease)
        self.end("lease_expired")
