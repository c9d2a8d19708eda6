"""``edgecloud ps``, ``start``, ``stop``, ``restart``, ``rm`` and ``inspect``.

A container is named by its id, a unique prefix of the id (at least 4 characters), or its name
(``web``, or in full ``<username>-web``), resolved through the list ``ps`` shows.
"""

from typing import Annotated

import typer

from . import context, output
from .client import ApiError, Client, Outcome
from .context import CliError, reported
from .schemas import Container

MIN_PREFIX = 4

ContainerRef = Annotated[
    str,
    typer.Argument(
        metavar="CONTAINER", help="An id, a unique id prefix (4+ characters) or a name."
    ),
]


def resolve(client: Client, ref: str) -> Container:
    """The one container ``ref`` names: an exact id, else a name, else an id prefix."""
    ref = ref.strip()
    items = client.containers()
    for item in items:
        if item["id"] == ref:
            return item
    named = [item for item in items if ref in (item["name"], _short_name(item))]
    if named:
        return _only(named, ref, what="name")
    if len(ref) < MIN_PREFIX:
        raise CliError(
            f"no container is named {ref!r}; an id prefix needs {MIN_PREFIX} characters or more"
        )
    return _only([item for item in items if item["id"].startswith(ref)], ref, what="id prefix")


def _short_name(container: Container) -> str:
    """The name as the owner gave it: ``web`` for ``admin-web``."""
    return container["name"].removeprefix(f"{container['owner']}-")


def _only(matches: list[Container], ref: str, *, what: str) -> Container:
    if not matches:
        raise CliError(f"no container matches {ref!r}; see `edgecloud ps`")
    if len(matches) > 1:
        listed = ", ".join(
            f"{m['id'][: output.SHORT_ID]} ({m['name']} on {m['device']})" for m in matches
        )
        raise CliError(f"{what} {ref!r} matches {len(matches)} containers: {listed}; use the id")
    return matches[0]


def report(client: Client, outcome: Outcome, *, action: str) -> None:
    """Say what became of the container; for a queued request, why and how to follow it."""
    container = outcome.container
    if container is None:
        return
    if outcome.queued:
        state = command_state(client, container["command"])
        output.queued(container, action=action, command_state=state)
        output.container_state(container, queued=action)
    else:
        output.container_state(container)


def command_state(client: Client, command_id: str | None) -> str | None:
    """queued (the device is offline) or sent (it is still at work); None when unknown, as
    the request itself has succeeded and only the explanation would be missing."""
    if not command_id:
        return None
    try:
        return client.command(command_id)["state"]
    except ApiError:
        return None


def ps(
    ctx: typer.Context,
    device: Annotated[
        str | None, typer.Option("--device", metavar="KEY", help="Only this device's.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw list as JSON.")] = False,
) -> None:
    """List your tenant's containers, newest first."""
    with reported(), context.client(ctx) as client:
        items = client.containers(device=device)
    if as_json:
        output.raw_json(items)
    else:
        output.containers(items)


def _act(ctx: typer.Context, ref: str, action: str) -> None:
    with reported(), context.client(ctx) as client:
        container = resolve(client, ref)
        report(client, client.act(container["id"], action), action=action)


def start(ctx: typer.Context, ref: ContainerRef) -> None:
    """Start a stopped container."""
    _act(ctx, ref, "start")


def stop(ctx: typer.Context, ref: ContainerRef) -> None:
    """Stop a running container."""
    _act(ctx, ref, "stop")


def restart(ctx: typer.Context, ref: ContainerRef) -> None:
    """Restart a container."""
    _act(ctx, ref, "restart")


def rm(ctx: typer.Context, ref: ContainerRef) -> None:
    """Remove a container (stopping it first)."""
    with reported(), context.client(ctx) as client:
        container = resolve(client, ref)
        outcome = client.remove_container(container["id"])
        if outcome.container is None:
            output.info(f"{container['name']}: removed")
        else:
            report(client, outcome, action="remove")


def inspect(
    ctx: typer.Context,
    ref: ContainerRef,
    live: Annotated[
        bool, typer.Option("--live", help="Ask the device for the state first.")
    ] = False,
) -> None:
    """Show a container as JSON, and the command it waits for, if any."""
    with reported(), context.client(ctx) as client:
        container = client.container(resolve(client, ref)["id"], live=live)
        command_id = container.get("command")
        command = client.command(command_id) if command_id else None
    output.raw_json(container)
    if command is not None:
        output.pending_command(command)
