"""``edgecloud logs``: a container's output, as the device has it; ``-f`` follows it.

Without ``-f`` the gateway answers ``text/plain``, printed byte for byte. With ``-f`` it streams
server-sent events: ``log`` events carry one line each, ``end`` says the container stopped
(or the stream ends), ``error`` that the gateway lost the device; keepalive comments are
skipped. Ctrl-C is how following is meant to stop, so it exits quietly with status 0.
"""

from typing import Annotated

import typer

from . import containers, context, output
from .client import Stream
from .containers import ContainerRef
from .context import CliError, reported
from .events import messages


def logs(
    ctx: typer.Context,
    ref: ContainerRef,
    tail: Annotated[
        int, typer.Option("--tail", metavar="N", min=0, help="Lines from the end to show.")
    ] = 100,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing the output as it comes.")
    ] = False,
) -> None:
    """Print a container's output; -f follows it until it stops."""
    try:
        with reported(), context.client(ctx) as client:
            container = containers.resolve(client, ref)
            with client.logs(container["id"], tail=tail, follow=follow) as stream:
                if follow:
                    _follow(stream)
                else:
                    for chunk in stream.chunks():
                        typer.echo(chunk, nl=False)
    except KeyboardInterrupt:
        return


def _follow(stream: Stream) -> None:
    for event in messages(stream.lines()):
        if event.kind == "log":
            typer.echo(event.data)
        elif event.kind == "end":
            return
        elif event.kind == "error":
            raise CliError(output.printable(event.data or "the log stream failed"))
    raise CliError("the log stream closed before the container stopped; run the command again")
