"""``edgecloud exec``: a command inside a container, or with ``-it`` an interactive shell.

``edgecloud exec web -- ls -l /app`` prints the command's output and exits with its exit
code (124 when it was killed at ``--timeout``, as ``timeout(1)`` does).

``edgecloud exec -it web [sh]`` is a terminal: the local one is put in raw mode, keystrokes
go out as they are typed, the window's size follows the local one, and the command exits
with the shell's exit code. When the device is on its slow mesh link, a line on stderr says
so: keystrokes then travel in batches, and long outputs take a while.
"""

import contextlib
import json
import os
import select
import shutil
import signal
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from . import containers, context, output
from .containers import ContainerRef
from .context import CliError, reported

TIMED_OUT = 124
READ_BYTES = 4096
CTRL_D = b"\x04"


def exec_command(
    ctx: typer.Context,
    container_ref: ContainerRef,
    cmd: Annotated[
        list[str] | None,
        typer.Argument(metavar="[--] CMD...", help="The command and its arguments (no shell)."),
    ] = None,
    interactive: Annotated[
        bool, typer.Option("--interactive", "-i", help="Keep stdin attached (a shell).")
    ] = False,
    tty_wanted: Annotated[
        bool, typer.Option("--tty", "-t", help="A terminal; -it for an interactive shell.")
    ] = False,
    timeout_s: Annotated[
        float,
        typer.Option("--timeout", min=1, max=600, help="Seconds before a command is killed."),
    ] = 60,
) -> None:
    """Run a command inside a container (as its user, within its limits, never on the node)."""
    with reported(), context.client(ctx) as client:
        container = containers.resolve(client, container_ref)
        if interactive or tty_wanted:
            cols, rows = shutil.get_terminal_size()
            socket = client.shell(container["id"], cmd=cmd or ["sh"], cols=cols, rows=rows)
        else:
            if not cmd:
                raise CliError("give the command to run: edgecloud exec CONTAINER -- CMD...")
            result = client.exec(container["id"], cmd, timeout_s=timeout_s)
            socket = None
    if socket is not None:
        raise typer.Exit(Session(socket).run())
    sys.stdout.write(result["output"])
    sys.stdout.flush()
    if result["truncated"]:
        output.notice("(output cut at 1 MiB)")
    if result["timed_out"]:
        output.error(f"the command was still running after {timeout_s:g} s and was killed")
        raise typer.Exit(TIMED_OUT)
    raise typer.Exit(result["exit_code"] or 0)


class Session:
    """One interactive shell: stdin to the WebSocket, the WebSocket to stdout."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._exit_code = 1
        self._done = threading.Event()

    def run(self) -> int:
        stdin = sys.stdin.fileno()
        reader = threading.Thread(target=self._receive, daemon=True)
        reader.start()
        with _raw(stdin), _resizes(self._send_size):
            self._send_keys(stdin)
        reader.join(timeout=5)
        self._socket.close()
        return self._exit_code

    def _send_keys(self, stdin: int) -> None:
        try:
            while not self._done.is_set():
                ready, _, _ = select.select([stdin], [], [], 0.2)
                if not ready:
                    continue
                data = os.read(stdin, READ_BYTES)
                # End of a piped input: as if Ctrl-D was typed; the shell exits on it.
                self._socket.send(data or CTRL_D)
                if not data:
                    self._done.wait()
        except (ConnectionClosed, OSError):
            pass

    def _send_size(self) -> None:
        cols, rows = shutil.get_terminal_size()
        with contextlib.suppress(ConnectionClosed, OSError):
            self._socket.send(json.dumps({"type": "resize", "cols": cols, "rows": rows}))

    def _receive(self) -> None:
        try:
            for message in self._socket:
                if isinstance(message, bytes):
                    os.write(sys.stdout.fileno(), message)
                else:
                    self._control(json.loads(message))
        except ConnectionClosed:
            pass
        finally:
            self._done.set()

    def _control(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "ready" and message.get("slow"):
            _say("the device is on its slow mesh link: keys travel in batches, output is slow")
        elif kind == "exit":
            code = message.get("exit_code")
            self._exit_code = code if isinstance(code, int) else 1
            if message.get("reason") not in ("exited", "closed"):
                _say(f"the shell ended: {message.get('reason')}")
        elif kind == "error":
            _say(f"{message.get('detail')} ({message.get('code')})")


def _say(text: str) -> None:
    # The terminal may be raw: a line needs its carriage return.
    sys.stderr.write(f"\r\nedgecloud: {text}\r\n")
    sys.stderr.flush()


@contextlib.contextmanager
def _raw(fd: int) -> Iterator[None]:
    """The local terminal in raw mode (keys go out as typed, Ctrl-C included); restored."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def _resizes(send: Any) -> Iterator[None]:
    """Send the new size whenever the local window changes (SIGWINCH)."""
    previous = signal.signal(signal.SIGWINCH, lambda *_: send())
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)
