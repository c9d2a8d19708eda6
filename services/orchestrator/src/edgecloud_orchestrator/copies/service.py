"""Retained copies: what a returning node keeps of containers placed elsewhere meanwhile.

A node asks, on each (re)join and before it reports anything, which of the copies it
holds are its own (:func:`check`). The answer names the stale ones, which the node stops
and keeps; each is recorded here for the tenant, who reads its files and logs through the
node and removes it, or lets the node's retention time remove it.
"""

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_contracts.containers import Action, ContainerReport
from edgecloud_contracts.placements import HeldCopy, PlacementAnswer, RetainedCopy
from edgecloud_servicekit.db import utcnow

from ..commands import service as commands_service
from ..commands.models import CommandRow
from ..containers.models import Container, PlacementRecord
from .exceptions import CopyNotFound
from .models import RetainedCopy as RetainedCopyRow

FENCED, REMOVING, REMOVED = "fenced", "removing", "removed"
GONE_STATES = ("removed", "destroyed")


def _why_stale(container: Container, *, device_key: str, held: HeldCopy) -> str | None:
    """Why the copy ``held`` on ``device_key`` is not the container's; None if it is."""
    if container.removed_at is not None:
        return f"the container was removed while {device_key} was away"
    if container.device_key != device_key:
        return (
            f"{device_key} came back after the container was placed on {container.device_key}"
            f" (placement {container.generation}); its copy there was stopped before it"
            " reached the network, and is kept"
        )
    if held.generation < container.generation:
        return f"a newer placement ({container.generation}) of the container is on this node"
    return None


async def check(
    *, session: AsyncSession, device_key: str, held: list[HeldCopy]
) -> tuple[PlacementAnswer, list[tuple[Container, RetainedCopyRow]]]:
    """The containers placed on ``device_key`` and which of its ``held`` copies are stale;
    each stale copy is recorded (returned with its container when it is news)."""
    placed = {
        container_id: generation
        for container_id, generation in await session.execute(
            select(Container.id, Container.generation).where(
                Container.device_key == device_key, Container.removed_at.is_(None)
            )
        )
    }
    ids = [copy.container_id for copy in held]
    known = {
        row.id: row for row in await session.scalars(select(Container).where(Container.id.in_(ids)))
    }
    # A node speaks only for copies the cloud placed on it: another node's container, or a
    # placement not recorded yet (a migration's target before the move is), is no concern.
    made_here = {
        (container_id, generation)
        for container_id, generation in await session.execute(
            select(PlacementRecord.container_id, PlacementRecord.generation).where(
                PlacementRecord.container_id.in_(ids), PlacementRecord.device_key == device_key
            )
        )
    }
    stale: list[str] = []
    news: list[tuple[Container, RetainedCopyRow]] = []
    for copy in held:
        container = known.get(copy.container_id)
        if container is None or (copy.container_id, copy.generation) not in made_here:
            continue  # an orphan, or none of this node's business: left alone
        reason = _why_stale(container, device_key=device_key, held=copy)
        if reason is None:
            continue
        stale.append(copy.container_id)
        row = await session.get(RetainedCopyRow, (copy.container_id, device_key))
        if row is not None and row.generation == copy.generation and row.state != REMOVED:
            continue  # told before, on an earlier join
        if row is None:
            row = RetainedCopyRow(container_id=copy.container_id, device_key=device_key)
            session.add(row)
        row.tenant_id, row.generation, row.state = container.tenant_id, copy.generation, FENCED
        row.reason, row.found_at, row.removed_at = reason[:500], utcnow(), None
        news.append((container, row))
    return PlacementAnswer(placed=placed, stale=stale), news


async def list_for(*, session: AsyncSession, container: Container) -> list[RetainedCopyRow]:
    rows = await session.scalars(
        select(RetainedCopyRow)
        .where(RetainedCopyRow.container_id == container.id)
        .order_by(RetainedCopyRow.found_at.desc())
    )
    return list(rows.all())


async def get_kept(
    *, session: AsyncSession, container: Container, device_key: str
) -> RetainedCopyRow:
    """A copy of ``container`` still kept on ``device_key``."""
    row = await session.get(RetainedCopyRow, (container.id, device_key))
    if row is None or row.state == REMOVED:
        raise CopyNotFound(container.id, device_key)
    return row


async def remove(
    *, session: AsyncSession, container: Container, device_key: str, ttl: timedelta
) -> CommandRow:
    """The tenant no longer wants the copy: its node is told to remove it (queued until
    the node is there). The record says removed once the node has."""
    row = await get_kept(session=session, container=container, device_key=device_key)
    row.state = REMOVING
    return commands_service.enqueue(
        session,
        tenant_id=container.tenant_id,
        container_id=container.id,
        device_key=device_key,
        docker_name=container.docker_name,
        action=Action.REMOVE,
        ttl=ttl,
    )


async def observe(
    *, session: AsyncSession, device_key: str, report: ContainerReport
) -> RetainedCopyRow | None:
    """A node's report of a container not placed there: the end of its kept copy, if
    that is what it says. Returns the copy if it ended."""
    if report.container_id is None or report.state not in GONE_STATES:
        return None
    row = await session.get(RetainedCopyRow, (report.container_id, device_key))
    if row is None or row.state == REMOVED:
        return None
    row.state, row.removed_at = REMOVED, utcnow()
    return row


async def reconcile(
    *, session: AsyncSession, device_key: str, inventory: list[ContainerReport]
) -> set[str]:
    """Kept copies the node no longer lists are gone; the ids of those it still keeps."""
    listed = {report.container_id for report in inventory if report.container_id}
    kept: set[str] = set()
    rows = await session.scalars(
        select(RetainedCopyRow).where(
            RetainedCopyRow.device_key == device_key, RetainedCopyRow.state != REMOVED
        )
    )
    for row in rows:
        if row.container_id in listed:
            kept.add(row.container_id)
        else:
            row.state, row.removed_at = REMOVED, utcnow()
    return kept


def to_view(row: RetainedCopyRow) -> RetainedCopy:
    return RetainedCopy(
        device=row.device_key,
        generation=row.generation,
        state=row.state,
        found_at=row.found_at,
        removed_at=row.removed_at,
        reason=row.reason,
    )
