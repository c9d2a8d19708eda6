"""``edgecloud interfaces``: a device's hardware interfaces and sensor streams.

``edgecloud interfaces list DEVICE`` shows them with the containers holding each (those of
another tenant unnamed); operators ``declare`` and ``remove`` them. A container asks for
them with ``edgecloud run ... --interface NAME``; a sensor stream's topic goes in its
subscriptions.
"""

from typing import Annotated

import typer

from . import context, output
from .context import reported

app = typer.Typer(
    help="A device's hardware interfaces and sensor streams (operators declare them).",
    no_args_is_help=True,
)

Device = Annotated[str, typer.Argument(metavar="DEVICE", help="The device's key.")]
Name = Annotated[str, typer.Argument(metavar="NAME", help="e.g. serial0, i2c-1, camera.")]


@app.command("list")
def list_interfaces(
    ctx: typer.Context,
    device: Device,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw list as JSON.")] = False,
) -> None:
    """The interfaces of DEVICE you may use (operators: all), and who holds them."""
    with reported(), context.client(ctx) as client:
        items = client.interfaces(device)
    if as_json:
        output.raw_json(items)
    else:
        output.interfaces(items)


@app.command("declare")
def declare(
    ctx: typer.Context,
    device: Device,
    name: Name,
    kind: Annotated[
        str, typer.Option(help="serial, i2c, spi, gpio, usb, camera or sensor.", show_default=False)
    ],
    path: Annotated[
        str | None, typer.Option(help="The device file on the node, e.g. /dev/ttyUSB0.")
    ] = None,
    container_path: Annotated[
        str | None, typer.Option(help="Where containers see it (default: the same path).")
    ] = None,
    topic: Annotated[
        str | None, typer.Option(help="A sensor stream: the MQTT topic filter it grants.")
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Containers only read it.")
    ] = False,
    shareable: Annotated[
        bool, typer.Option("--shareable", help="Several containers may hold it at once.")
    ] = False,
    tenant: Annotated[
        list[str] | None,
        typer.Option("--tenant", help="A tenant (name or id) that may use it; repeat for more."),
    ] = None,
    description: Annotated[str, typer.Option(help="What it is, for the people using it.")] = "",
) -> None:
    """Declare (or replace) an interface of DEVICE and who may use it (operators only)."""
    declaration = {
        "kind": kind,
        "path": path,
        "container_path": container_path,
        "topic": topic,
        "read_only": read_only,
        "shareable": shareable,
        "tenants": tenant or [],
        "description": description,
    }
    with reported(), context.client(ctx) as client:
        declared = client.declare_interface(device, name, declaration)
    output.info(f"Declared {declared['name']} ({declared['kind']}) on {device}")


@app.command("remove")
def remove(ctx: typer.Context, device: Device, name: Name) -> None:
    """Withdraw an interface (operators only); containers holding it keep it until they stop."""
    with reported(), context.client(ctx) as client:
        client.remove_interface(device, name)
    output.info(f"Removed {name} from {device}")
