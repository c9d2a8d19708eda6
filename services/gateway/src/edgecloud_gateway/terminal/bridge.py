"""One interactive shell: the user's WebSocket on one side, the node's shell on the other.

The WebSocket carries the terminal's bytes as binary messages both ways, and JSON text
messages for the rest:

- from the user: ``{"type": "resize", "cols", "rows"}``, ``{"type": "input", "data"}``
  (text typed, for clients that prefer text) and ``{"type": "close"}``;
- to the user: ``{"type": "ready", "session", "link", "slow"}`` first, then
  ``{"type": "exit", "reason", "exit_code"}`` or ``{"type": "error", "code", "detail"}``
  just before the close.

Towards the node (frames in :mod:`edgecloud_contracts.shell`) one ``shell.input`` call is
in flight at a time; what the user types meanwhile is gathered into the next one, so
keystrokes batch by themselves when the link is slow, and on the mesh the batch also
waits a moment for more. Output is acknowledged to the node only once the user's
WebSocket has taken it: a user who stops reading stops the process's output at the node.
Input is read from the user only while little of it waits to be sent.
"""

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from edgecloud_contracts import errors, uris
from edgecloud_contracts.shell import (
    ACK,
    CLOSE,
    INPUT,
    KEEPALIVE,
    MAX_INPUT_BYTES_PER_CALL,
    MAX_TERMINAL_SIDE,
    OUTPUT,
    READY,
    RESIZE,
    ShellEnd,
    ShellOpen,
)
from edgecloud_servicekit.wamp import WampCallError, WampError, WampLink

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
"""The largest WebSocket message a user may send (a paste, a resize)."""
MAX_PENDING_INPUT = 64 * 1024
SLOW_LINK = "lowpan"

# WebSocket close codes the user sees.
NORMAL, GOING_AWAY, INVALID_DATA, TOO_BIG, INTERNAL = 1000, 1001, 1007, 1009, 1011
ACCESS_ENDED = 4403
IDLE = 4408


@dataclass(frozen=True, slots=True)
class ShellLimits:
    idle_timeout_s: float
    keepalive_s: float
    max_duration_s: float
    slow_batch_s: float = 0.15
    input_call_timeout_s: float = 10.0
    close_grace_s: float = 5.0


@dataclass(slots=True)
class ShellOutcome:
    reason: str
    """exited, closed, idle, lease_expired, too_big, malformed, error, revoked."""
    exit_code: int | None = None
    close_code: int = NORMAL
    error_code: str | None = None
    detail: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    input_calls: int = 0
    """``shell.input`` calls made: what the user's typing cost on the node's link."""
    output_frames: int = 0


_END = object()


class ShellBridge:
    def __init__(
        self,
        websocket: WebSocket,
        wamp: WampLink,
        *,
        device_key: str,
        request: ShellOpen,
        limits: ShellLimits,
    ) -> None:
        self._websocket = websocket
        self._wamp = wamp
        self._request = request
        self._limits = limits
        self._open_uri = uris.device_procedure(device_key, uris.SHELL_OPEN)
        self._input_uri = uris.device_procedure(device_key, uris.SHELL_INPUT)
        self._outcome: ShellOutcome | None = None
        self._ended = asyncio.Event()
        self._outbound: asyncio.Queue[Any] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._input_room = asyncio.Event()
        self._input_room.set()
        self._input = bytearray()
        self._resize: tuple[int, int] | None = None
        self._unacknowledged = 0
        self._window = request.window_bytes
        self._slow = False
        self._typed = asyncio.Event()
        self._bytes_in = 0
        self._bytes_out = 0
        self._input_calls = 0
        self._output_frames = 0
        self.ready = asyncio.Event()
        """Set once the node has started the shell."""

    async def run(self) -> ShellOutcome:
        call = asyncio.create_task(self._call_node())
        tasks = [
            call,
            asyncio.create_task(self._from_user()),
            asyncio.create_task(self._to_user()),
            asyncio.create_task(self._to_node()),
            asyncio.create_task(self._watch_idle()),
        ]
        try:
            await self._ended.wait()
        finally:
            if not call.done():
                await self._close_at_node(call)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        outcome = self._outcome or ShellOutcome("closed")
        outcome.bytes_in, outcome.bytes_out = self._bytes_in, self._bytes_out
        outcome.input_calls, outcome.output_frames = self._input_calls, self._output_frames
        await self._say_goodbye(outcome)
        return outcome

    def end_for(self, code: str, detail: str) -> None:
        """End the session from outside (its access was taken away): the user is told why."""
        self._finish(
            ShellOutcome("revoked", close_code=ACCESS_ENDED, error_code=code, detail=detail)
        )

    def _finish(self, outcome: ShellOutcome) -> None:
        if self._outcome is None:
            self._outcome = outcome
        self._ended.set()

    # The node's side.

    async def _call_node(self) -> None:
        try:
            answer = await self._wamp.call_streaming(
                self._open_uri,
                self._request.model_dump(mode="json"),
                on_progress=self._on_progress,
                timeout=self._limits.max_duration_s,
            )
            end = ShellEnd.model_validate(answer)
            # After the output still queued for the user.
            self._outbound.put_nowait((_END, end))
        except WampCallError as err:
            detail = str(err.args_[0]) if err.args_ else err.error
            code = "container_not_running" if err.error == errors.NOT_FOUND else "shell_refused"
            self._finish(ShellOutcome("error", close_code=INTERNAL, error_code=code, detail=detail))
        except WampError as err:
            self._finish(_unreachable(err))

    def _on_progress(self, kind: Any = None, payload: Any = None, *_: Any) -> None:
        self._outbound.put_nowait((kind, payload))

    async def _close_at_node(self, call: "asyncio.Task[None]") -> None:
        try:
            await self._wamp.call(
                self._input_uri,
                self._request.session_id,
                [[CLOSE]],
                timeout=self._limits.close_grace_s,
            )
            async with asyncio.timeout(self._limits.close_grace_s):
                await asyncio.shield(call)
        except (WampError, TimeoutError) as err:
            # The node ends it by itself once its lease runs out.
            logger.info("shell %s: no clean close at the node: %s", self._request.session_id, err)

    async def _to_node(self) -> None:
        await self.ready.wait()  # the node knows the session from then on
        last_sent = time.monotonic()
        while True:
            wait = self._limits.keepalive_s - (time.monotonic() - last_sent)
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can miss a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0)):
                    await self._wake.wait()
            self._wake.clear()
            if self._slow and self._input:
                await asyncio.sleep(self._limits.slow_batch_s)  # gather more keystrokes
            quiet_s = time.monotonic() - last_sent
            frames = self._frames(keepalive_due=quiet_s >= self._limits.keepalive_s)
            if not frames:
                continue
            self._input_calls += 1
            try:
                await self._wamp.call(
                    self._input_uri,
                    self._request.session_id,
                    frames,
                    timeout=self._limits.input_call_timeout_s,
                    idempotent=False,  # keystrokes must not be typed twice
                )
            except WampCallError as err:
                if err.error != errors.NOT_FOUND:
                    self._finish(_unreachable(err))
                return  # the shell has ended at the node: its end is on its way
            except WampError as err:
                self._finish(_unreachable(err))
                return
            last_sent = time.monotonic()
            if self._input or self._resize:
                self._wake.set()

    def _frames(self, *, keepalive_due: bool) -> list[list[Any]]:
        frames: list[list[Any]] = []
        if self._input:
            chunk = bytes(self._input[:MAX_INPUT_BYTES_PER_CALL])
            del self._input[: len(chunk)]
            frames.append([INPUT, chunk])
            if len(self._input) < MAX_PENDING_INPUT:
                self._input_room.set()
        if self._resize is not None:
            frames.append([RESIZE, *self._resize])
            self._resize = None
        if self._unacknowledged and (frames or self._unacknowledged * 2 >= self._window):
            frames.append([ACK, self._unacknowledged])
            self._unacknowledged = 0
        if not frames and keepalive_due:
            frames.append([KEEPALIVE])
        return frames

    # The user's side.

    async def _to_user(self) -> None:
        while True:
            kind, payload = await self._outbound.get()
            if kind is _END:
                self._finish(ShellOutcome(payload.reason, exit_code=payload.exit_code))
                return
            if kind == READY and isinstance(payload, dict):
                link = str(payload.get("link", ""))
                self._slow = link == SLOW_LINK
                window = payload.get("window")
                if isinstance(window, int) and window > 0:
                    self._window = window
                await self._websocket.send_text(
                    json.dumps(
                        {
                            "type": "ready",
                            "session": self._request.session_id,
                            "link": link,
                            "slow": self._slow,
                        }
                    )
                )
                self.ready.set()
            elif kind == OUTPUT and isinstance(payload, bytes):
                # Returns once the user's connection has taken it: that is the back-pressure.
                await self._websocket.send_bytes(payload)
                self._output_frames += 1
                self._bytes_out += len(payload)
                self._unacknowledged += len(payload)
                if self._unacknowledged * 2 >= self._window:
                    self._wake.set()

    async def _from_user(self) -> None:
        while True:
            await self._input_room.wait()
            try:
                message = await self._websocket.receive()
            except (WebSocketDisconnect, RuntimeError):
                self._finish(ShellOutcome("closed", close_code=GOING_AWAY))
                return
            if message["type"] == "websocket.disconnect":
                self._finish(ShellOutcome("closed", close_code=GOING_AWAY))
                return
            problem = self._take(message.get("bytes"), message.get("text"))
            if problem is not None:
                self._finish(problem)
                return

    def _take(self, data: bytes | None, text: str | None) -> ShellOutcome | None:
        """One message from the user; the outcome that ends the session when it is bad."""
        size = len(data) if data is not None else len((text or "").encode())
        if size > MAX_MESSAGE_BYTES:
            return ShellOutcome(
                "too_big",
                close_code=TOO_BIG,
                error_code="message_too_big",
                detail=f"a message may carry at most {MAX_MESSAGE_BYTES} bytes",
            )
        self._typed.set()
        if data is not None:
            self._queue_input(data)
            return None
        try:
            control = json.loads(text or "")
        except ValueError:
            control = None
        kind = control.get("type") if isinstance(control, dict) else None
        if kind == "input" and isinstance(control.get("data"), str):
            self._queue_input(control["data"].encode())
        elif kind == "resize" and _side(control.get("cols")) and _side(control.get("rows")):
            self._resize = (control["cols"], control["rows"])
            self._wake.set()
        elif kind == "close":
            return ShellOutcome("closed")
        else:
            return ShellOutcome(
                "malformed",
                close_code=INVALID_DATA,
                error_code="malformed_message",
                detail='text messages are JSON: {"type": "resize" | "input" | "close", ...}',
            )
        return None

    def _queue_input(self, data: bytes) -> None:
        self._input += data
        self._bytes_in += len(data)
        if len(self._input) >= MAX_PENDING_INPUT:
            self._input_room.clear()
        self._wake.set()

    async def _watch_idle(self) -> None:
        idle = self._limits.idle_timeout_s
        while True:
            try:
                async with asyncio.timeout(idle):
                    await self._typed.wait()
            except TimeoutError:
                break
            self._typed.clear()
        self._finish(
            ShellOutcome(
                "idle",
                close_code=IDLE,
                error_code="idle_timeout",
                detail=f"nothing typed for {idle:g}s",
            )
        )

    async def _say_goodbye(self, outcome: ShellOutcome) -> None:
        if outcome.reason == "closed" and outcome.close_code == GOING_AWAY:
            return  # the user is gone
        last: dict[str, Any]
        if outcome.error_code is not None:
            last = {"type": "error", "code": outcome.error_code, "detail": outcome.detail}
        else:
            last = {"type": "exit", "reason": outcome.reason, "exit_code": outcome.exit_code}
        try:
            await self._websocket.send_text(json.dumps(last))
            await self._websocket.close(outcome.close_code)
        except (WebSocketDisconnect, RuntimeError, OSError) as err:
            logger.debug(
                "shell %s: user gone before the goodbye: %s", self._request.session_id, err
            )


def _side(value: Any) -> bool:
    return type(value) is int and 1 <= value <= MAX_TERMINAL_SIDE


def _unreachable(err: Exception) -> ShellOutcome:
    return ShellOutcome(
        "error", close_code=INTERNAL, error_code="device_unreachable", detail=str(err)
    )
