"""``edgecloud run``: create and start a container on a device, or on one the platform picks.

The request returns once the device has pulled the image and started the container (201), or
at once with the create queued when the device is offline (202). Meanwhile the image pull
progress is read from the event stream and shown on stderr.
"""

import re
import sys
from contextlib import nullcontext
from enum import StrEnum
from typing import Annotated

import typer

from . import containers, context, output
from .context import reported
from .events import Event, Follower
from .schemas import LimitsRequest, NewContainer, Placement, PortMapping

SIZE = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[kmg]?)(?:i?b)?", re.IGNORECASE)
UNIT_POWERS = {"": 0, "k": 1, "m": 2, "g": 3}
PUBLISH = re.compile(r"(?P<host>\d{1,5}):(?P<container>\d{1,5})(?:/(?P<protocol>tcp|udp))?")


class RestartPolicy(StrEnum):
    NO = "no"
    ON_FAILURE = "on-failure"
    UNLESS_STOPPED = "unless-stopped"


def parse_env(pairs: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` pairs as a dict; the value may be empty or hold more ``=``."""
    env: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals:
            raise ValueError(f"{pair!r} is not NAME=VALUE")
        if not name:
            raise ValueError(f"{pair!r} has no name before the =")
        env[name] = value
    return env


def parse_publish(text: str) -> PortMapping:
    """``HOST:CONTAINER`` (TCP) or ``HOST:CONTAINER/udp``, as Docker's ``-p`` without an
    address: the node decides where it listens."""
    match = PUBLISH.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not HOST:CONTAINER or HOST:CONTAINER/udp")
    return PortMapping(
        host=int(match["host"]),
        container=int(match["container"]),
        protocol=match["protocol"] or "tcp",
    )


def parse_size(text: str) -> int:
    """Bytes from ``1048576``, ``512k``, ``256m``, ``1.5g`` (also ``256MiB``, ``256mb``);
    the units are binary, as Docker's are."""
    match = SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a size like 256m, 1.5g or 1048576")
    size = int(float(match["number"]) * 1024 ** UNIT_POWERS[match["unit"].lower()])
    if size <= 0:
        raise ValueError(f"{text!r} is not more than 0 bytes")
    return size


class PullProgress:
    """Show the pull progress of one image from ``command`` events, a line per change; on a
    terminal (``live``) each line replaces the one before."""

    def __init__(self, image: str, *, live: bool) -> None:
        self.image = image
        self.live = live
        self._last: str | None = None

    def __call__(self, event: Event) -> None:
        if event.kind != "command" or not isinstance(event.data, dict):
            return
        progress = event.data.get("progress")
        if not isinstance(progress, dict) or progress.get("image") != self.image:
            return
        line = output.describe_pull(progress)
        if line != self._last:
            output.progress(line, live=self.live)
            self._last = line

    def finish(self) -> None:
        """End a live line, so that what follows starts on a line of its own."""
        if self.live and self._last is not None:
            output.notice("")


def run(
    ctx: typer.Context,
    image: Annotated[
        str, typer.Argument(metavar="IMAGE", help="The image, e.g. edgecloud/busybox:latest.")
    ],
    name: Annotated[
        str, typer.Option("--name", help="The container's name; it runs as <username>-NAME.")
    ],
    command: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="COMMAND",
            help="The command and its arguments, instead of the image's; put them after --.",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", metavar="KEY", help="The device to run on.")
    ] = None,
    location: Annotated[
        str | None,
        typer.Option(help="Instead of --device: any reachable device at this location."),
    ] = None,
    arch: Annotated[
        str | None, typer.Option(help="Instead of --device: any device of this architecture.")
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", metavar="NAME=VALUE", help="An environment variable."),
    ] = None,
    memory: Annotated[
        str | None,
        typer.Option(metavar="SIZE", help="Memory limit: bytes, or with k, m, g (256m)."),
    ] = None,
    cpus: Annotated[float | None, typer.Option(help="CPU limit, e.g. 0.5.")] = None,
    pids: Annotated[int | None, typer.Option(help="Process limit.")] = None,
    disk: Annotated[
        str | None,
        typer.Option(metavar="SIZE", help="Size of the container's /app: bytes, or k, m, g."),
    ] = None,
    publish: Annotated[
        list[str] | None,
        typer.Option(
            "--publish",
            "-p",
            metavar="HOST:CONTAINER[/udp]",
            help="Publish a container port on the device's HOST port (from the range the "
            "device allows); repeat for more.",
        ),
    ] = None,
    no_network: Annotated[
        bool, typer.Option("--no-network", help="Give the container no network at all.")
    ] = False,
    auto_remove: Annotated[
        bool, typer.Option("--rm", help="Remove the container when it exits.")
    ] = False,
    restart: Annotated[
        RestartPolicy | None,
        typer.Option(help="Restart policy (default: unless-stopped).", show_default=False),
    ] = None,
    interface: Annotated[
        list[str] | None,
        typer.Option(
            "--interface",
            metavar="NAME",
            help="A declared hardware interface of the device to map in; repeat for more.",
        ),
    ] = None,
    subscribe: Annotated[
        list[str] | None,
        typer.Option(
            "--subscribe",
            metavar="TOPIC",
            help="A granted sensor topic fed to /app/inbox.jsonl; repeat for more.",
        ),
    ] = None,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach",
            "-d",
            help="Do not follow the image pull. (Containers always run in the background.)",
        ),
    ] = False,
    progress: Annotated[
        bool,
        typer.Option(
            "--progress", help="Show the image pull progress even when stderr is not a terminal."
        ),
    ] = False,
) -> None:
    """Create and start a container; queued when the device is offline."""
    request = NewContainer(name=name, image=image)
    if device:
        if location or arch:
            raise typer.BadParameter("give --device or --location/--arch, not both")
        request["device"] = device
    elif location or arch:
        request["placement"] = _placement(location=location, arch=arch)
    else:
        raise typer.BadParameter(
            "give --device KEY, or --location and/or --arch to let the platform choose"
        )
    if command:
        request["command"] = command
    if env:
        try:
            request["env"] = parse_env(env)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--env") from None
    limits = _limits(memory=memory, cpus=cpus, pids=pids, disk=disk)
    if limits:
        request["limits"] = limits
    if no_network:
        if publish:
            raise typer.BadParameter("a container without a network publishes no ports")
        request["network"] = "none"
    if publish:
        try:
            request["ports"] = [parse_publish(item) for item in publish]
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--publish") from None
    if auto_remove:
        request["auto_remove"] = True
    if restart is not None:
        request["restart_policy"] = restart.value
    if interface:
        request["interfaces"] = interface
    if subscribe:
        request["subscriptions"] = subscribe
    terminal = sys.stderr.isatty()
    pull = PullProgress(image, live=terminal) if not detach and (progress or terminal) else None

    with reported(), context.client(ctx) as client:
        following = Follower(context.client(ctx), pull) if pull else nullcontext()
        try:
            with following:
                outcome = client.create_container(request)
        finally:
            if pull:
                pull.finish()
        created = outcome.container
        assert created is not None, "a create always answers with the container"
        if outcome.queued:
            state = containers.command_state(client, created["command"])
            output.queued(created, action="create", command_state=state)
        else:
            published = output.describe_ports(created.get("ports") or [])
            where = f" ({published})" if published else ""
            output.notice(f"{created['name']}: {created['state']} on {created['device']}{where}")
    output.info(created["id"])


def _placement(*, location: str | None, arch: str | None) -> Placement:
    placement = Placement()
    if location:
        placement["location"] = location
    if arch:
        placement["arch"] = arch
    return placement


def _limits(
    *, memory: str | None, cpus: float | None, pids: int | None, disk: str | None
) -> LimitsRequest:
    """Only the limits given; the platform's defaults for the others."""
    limits = LimitsRequest()
    if memory is not None:
        limits["memory"] = _size(memory, option="--memory")
    if disk is not None:
        limits["disk"] = _size(disk, option="--disk")
    if cpus is not None:
        limits["cpus"] = cpus
    if pids is not None:
        limits["pids"] = pids
    return limits


def _size(text: str, *, option: str) -> int:
    try:
        return parse_size(text)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint=option) from None
