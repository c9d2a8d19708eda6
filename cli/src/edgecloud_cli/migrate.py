"""``edgecloud migrate``: move a container to another device (or to the one the scheduler
picks), following the migration to its end; ``edgecloud migrations``: the history.

The migration is read every :data:`POLL_INTERVAL_S`, as ``deploy`` reads a deployment: each
step is printed once it has ended, then the final state and how long the container was
frozen. The follow lines go to stderr; stdout gets the migration id (or, with ``--json``, the
migration).
"""

from typing import Annotated

import typer

from . import containers, context, following, output
from .client import Client
from .containers import ContainerRef
from .context import reported
from .schemas import Migration

POLL_INTERVAL_S = 0.5
DONE = frozenset({"completed", "rolled_back", "failed", "cold_restarted"})
STORED = "stored"
"""Level 1: a keeper holds it until a node can run it; following stops there (it may wait
for days), and ``edgecloud migrations`` shows when it is handed on."""
NOT_MOVED = frozenset({"failed", "rolled_back"})
"""Ends in which the container stayed where it was: the command exits 1."""


class Watch:
    """Print each step of the migration once it has ended."""

    def __init__(self) -> None:
        self._steps = following.EndedSteps()

    def __call__(self, migration: Migration) -> None:
        ended = migration["state"] in DONE or migration["state"] == STORED
        for step in self._steps.new(migration["steps"], done=ended):
            duration = step["duration_ms"]
            timed = f" {output.human_duration(duration)}" if duration is not None else ""
            output.notice(f"{step['name']}{timed}")


def follow(client: Client, migration_id: str) -> Migration:
    """Read the migration until it has ended; a read that fails for want of an answer (or
    with a 5xx) is tried again."""
    return following.until_done(
        lambda: client.migration(migration_id),
        done=lambda migration: migration["state"] in DONE or migration["state"] == STORED,
        seen=Watch(),
        every_s=POLL_INTERVAL_S,
    )


def migrate(
    ctx: typer.Context,
    container_ref: ContainerRef,
    device: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="DEVICE",
            help="The device key to move to (default: the scheduler picks one).",
            show_default=False,
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait", help="Follow the migration to its end, or print its id and return."
        ),
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the migration as JSON at the end.")
    ] = False,
) -> None:
    """Move a container to another device; exits 1 when it stays where it was."""
    with reported(), context.client(ctx) as client:
        container = containers.resolve(client, container_ref)
        accepted = client.migrate(container["id"], device=device)
        migration_id = accepted["migration"]
        where = device or "a device the scheduler picks"
        output.notice(f"{container['name']}: migration {migration_id} to {where} requested")
        if not wait:
            output.result(accepted if as_json else migration_id, as_json=as_json)
            return
        try:
            final = follow(client, migration_id)
        except KeyboardInterrupt:
            output.notice(
                f"stopped following; migration {migration_id} goes on "
                f"(see it: edgecloud migrations --container {container_ref})"
            )
            raise typer.Exit(130) from None
    output.result(final if as_json else migration_id, as_json=as_json)
    _report_end(final)


def migrations(
    ctx: typer.Context,
    container_ref: Annotated[
        str | None,
        typer.Option(
            "--container",
            metavar="CONTAINER",
            help="Only this container's: an id, a unique id prefix (4+ characters) or a name.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, help="How many, newest first.")
    ] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw list as JSON.")] = False,
) -> None:
    """List migrations of your tenant's containers, newest first."""
    with reported(), context.client(ctx) as client:
        container_id = containers.resolve(client, container_ref)["id"] if container_ref else None
        items = client.migrations(container=container_id, limit=limit)
    if as_json:
        output.raw_json(items)
    else:
        output.migrations(items)


def _report_end(final: Migration) -> None:
    """``completed: pi-1 -> pi-2, frozen 85 ms``; an error and exit 1 when nothing moved."""
    state, target = final["state"], final["target"] or output.MISSING
    freeze = final["freeze_ms"]
    frozen = f", frozen {output.human_duration(freeze)}" if freeze is not None else ""
    if state in NOT_MOVED:
        reason = output.printable(final.get("error") or f"the migration ended {state}")
        output.error(f"{reason} ({final.get('error_code') or state})")
    if state == STORED:
        output.notice(
            f"stored: {final['source']} -> kept on {final.get('keeper') or target} until a node "
            "can run it; it is handed on then (edgecloud migrations shows when)"
        )
        return
    output.notice(f"{state}: {final['source']} -> {target}{frozen}")
    lost = final.get("lost_window")
    if state == "cold_restarted" and lost:
        output.notice(
            f"it ran nowhere from {lost.get('from')} to {lost.get('until')}: "
            "data sent to it then may be lost"
        )
    if state in NOT_MOVED:
        raise typer.Exit(1)
