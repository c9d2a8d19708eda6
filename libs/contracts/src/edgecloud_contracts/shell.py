"""Commands and terminals inside a container: one-shot exec and the interactive shell.

A one-shot exec is one WAMP call to the node (``container.exec``): the command runs inside
the container through Docker exec, and the answer carries its exit code and output.

An interactive shell is a stream between the gateway and the node, in compact frames (the
node may be on its slow mesh link):

- ``shell.open(ShellOpen)`` is a call with progressive results. Each progress is one
  output frame, ``[OUTPUT, bytes]``, after a first ``[READY, {"link": ...}]``; the final
  result is :class:`ShellEnd`.
- ``shell.input(session_id, frames)`` carries the other way a list of input frames:
  ``[INPUT, bytes]``, ``[RESIZE, cols, rows]``, ``[ACK, n]`` (n bytes of output delivered
  to the user), ``[KEEPALIVE]``, ``[CLOSE]``.

Back-pressure: the node stops reading the process's output while more than
``window_bytes`` of it are unacknowledged; the gateway acknowledges what its WebSocket
client has taken. The node ends a session it hears nothing of for ``lease_s`` (a gateway
that died), so no orphan shell stays behind.
"""

from typing import Annotated, Any, Final, Literal

from pydantic import Field

from .containers import NO_NUL
from .heartbeat import WireModel
from .ids import DOCKER_NAME_PATTERN, Identifier

Argv = Annotated[
    list[Annotated[str, Field(max_length=4096, pattern=NO_NUL)]],
    Field(min_length=1, max_length=256),
]

MAX_EXEC_OUTPUT_BYTES: Final = 1 << 20
"""An exec answer is one WAMP message: output beyond this is cut (``truncated``)."""


class ExecRequest(WireModel):
    """``POST /containers/{id}/exec``."""

    cmd: Argv
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 60


class ExecOrder(WireModel):
    """``container.exec`` on the node."""

    container_id: Identifier
    docker_name: Annotated[str, Field(pattern=DOCKER_NAME_PATTERN)]
    cmd: Argv
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 60


class ExecResult(WireModel):
    exit_code: int | None
    """None when the command was still running at its timeout."""
    output: str
    """stdout and stderr as they came, decoded as UTF-8 (bad bytes replaced)."""
    truncated: bool = False
    timed_out: bool = False


# Shell frame kinds: one letter each, the frames cross the slow mesh.
READY: Final = "r"
OUTPUT: Final = "o"
INPUT: Final = "i"
RESIZE: Final = "z"
ACK: Final = "a"
KEEPALIVE: Final = "k"
CLOSE: Final = "x"

MAX_INPUT_BYTES_PER_CALL: Final = 16 * 1024
MAX_FRAMES_PER_CALL: Final = 64
MAX_TERMINAL_SIDE: Final = 1000

Dimension = Annotated[int, Field(ge=1, le=MAX_TERMINAL_SIDE)]


class ShellOpen(WireModel):
    """``shell.open`` on the node."""

    session_id: Identifier
    container_id: Identifier
    docker_name: Annotated[str, Field(pattern=DOCKER_NAME_PATTERN)]
    cmd: Argv = ["sh"]
    tty: bool = True
    cols: Dimension = 80
    rows: Dimension = 24
    window_bytes: Annotated[int, Field(ge=1024, le=1 << 20)] = 64 * 1024
    lease_s: Annotated[float, Field(ge=5, le=3600)] = 90


EndReason = Literal["exited", "closed", "lease_expired", "error"]
"""The process exited; the user closed it; its gateway went silent; the stream broke."""


class ShellEnd(WireModel):
    """The final result of ``shell.open``."""

    exit_code: int | None
    """The process's, when it exited."""
    reason: EndReason


InputFrame = (
    tuple[Literal["i"], bytes]
    | tuple[Literal["z"], int, int]
    | tuple[Literal["a"], int]
    | tuple[Literal["k"]]
    | tuple[Literal["x"]]
)


class BadFrames(ValueError):
    """Input frames that break the protocol; the session ends."""


def parse_input_frames(raw: Any) -> list[InputFrame]:
    """Check ``shell.input``'s frames strictly: kinds, types, sizes and counts."""
    if not isinstance(raw, list) or len(raw) > MAX_FRAMES_PER_CALL:
        raise BadFrames(f"frames must be a list of at most {MAX_FRAMES_PER_CALL}")
    frames: list[InputFrame] = []
    input_bytes = 0
    for frame in raw:
        if not isinstance(frame, list | tuple) or not frame or not isinstance(frame[0], str):
            raise BadFrames("a frame is a list starting with its kind")
        kind, rest = frame[0], list(frame[1:])
        if kind == INPUT and len(rest) == 1 and isinstance(rest[0], bytes):
            input_bytes += len(rest[0])
            frames.append((INPUT, rest[0]))
        elif kind == RESIZE and len(rest) == 2 and all(_dimension(value) for value in rest):
            frames.append((RESIZE, rest[0], rest[1]))
        elif kind == ACK and len(rest) == 1 and _count(rest[0]):
            frames.append((ACK, rest[0]))
        elif kind == KEEPALIVE and not rest:
            frames.append((KEEPALIVE,))
        elif kind == CLOSE and not rest:
            frames.append((CLOSE,))
        else:
            raise BadFrames(f"not a valid {kind!r} frame")
    if input_bytes > MAX_INPUT_BYTES_PER_CALL:
        raise BadFrames(f"more than {MAX_INPUT_BYTES_PER_CALL} bytes of input in one call")
    return frames


def _dimension(value: Any) -> bool:
    return type(value) is int and 1 <= value <= MAX_TERMINAL_SIDE


def _count(value: Any) -> bool:
    return type(value) is int and 0 <= value <= 1 << 30
