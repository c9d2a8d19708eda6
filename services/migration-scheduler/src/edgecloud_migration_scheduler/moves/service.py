"""Migration records: written as a migration moves along, read on behalf of users.

The writers (``record_migration``, ``set_plan``, ``add_step``, ``finish``) are called by
the peer migration work (issue #8: peer selection, the agents' reports); the readers
answer the REST API. States only move forward, since reports may arrive out of order.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_contracts.migrations import (
    MIGRATION_DONE,
    LostWindow,
    MigrationReason,
    MigrationState,
    MigrationStep,
    MigrationView,
)
from edgecloud_servicekit.db import utcnow
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.pagination import newest_first

from .exceptions import MigrationNotFound
from .models import Migration

_ORDER = {state: rank for rank, state in enumerate(MigrationState)}


def record_migration(
    session: AsyncSession,
    *,
    tenant_id: str,
    container_id: str,
    source_device: str,
    reason: MigrationReason,
    target_device: str | None = None,
    migration_id: str | None = None,
) -> Migration:
    """A new migration, ``requested``, stored by the caller's transaction."""
    now = utcnow()
    row = Migration(
        id=migration_id or str(uuid.uuid4()),
        tenant_id=tenant_id,
        container_id=container_id,
        source_device=source_device,
        target_device=target_device,
        reason=reason.value,
        state=MigrationState.REQUESTED.value,
        plan=None,
        steps=[],
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    return row


async def set_plan(
    *,
    session: AsyncSession,
    migration_id: str,
    target_device: str,
    plan: dict[str, Any],
    level: int = 2,
    via: str | None = None,
) -> Migration | None:
    """The peer selection's outcome: the target, and what was weighed to choose it; at
    ``level`` 1 the target is the keeper, at 0 ``via`` is the peer that found it. None
    when the migration has already ended."""
    row = await _unfinished(session, migration_id)
    if row is not None:
        row.target_device, row.plan, row.updated_at = target_device, plan, utcnow()
        row.level, row.keeper = level, (target_device or None) if level == 1 else None
        row.via = via
    return row


async def store(*, session: AsyncSession, migration_id: str) -> Migration | None:
    """Level 1: the keeper holds the package and the source's copy is gone; the migration
    waits for a node that can run the container."""
    row = await _unfinished(session, migration_id)
    if row is not None:
        row.state, row.updated_at = MigrationState.STORED.value, utcnow()
        row.target_device = row.keeper  # until it is handed on
    return row


async def stored(*, session: AsyncSession) -> list[Migration]:
    """Level-1 migrations whose packages wait on their keepers, oldest first."""
    query = select(Migration).where(Migration.state == MigrationState.STORED.value)
    return list((await session.scalars(query.order_by(Migration.created_at))).all())


async def hand_on(*, session: AsyncSession, migration_id: str, target_device: str) -> bool:
    """A stored package goes on to ``target_device``: False when another round took it."""
    row = await session.get(Migration, migration_id, with_for_update=True)
    if row is None or row.state != MigrationState.STORED.value:
        return False
    # Back to transferring: the one move of a state backwards, from waiting to moving on.
    row.state, row.target_device = MigrationState.TRANSFERRING.value, target_device
    row.updated_at = utcnow()
    return True


async def add_step(
    *,
    session: AsyncSession,
    migration_id: str,
    step: MigrationStep,
    state: MigrationState | None = None,
) -> Migration | None:
    """A step begun (no duration yet) or ended: it replaces the step of the same name in
    place. ``state`` moves the migration forward, never back. None when the migration has
    already ended: a late report changes nothing."""
    if state in MIGRATION_DONE:
        raise ValueError(f"{state} ends a migration: use finish()")
    row = await _unfinished(session, migration_id)
    if row is None:
        return None
    if state is not None and _ORDER[state] > _ORDER[MigrationState(row.state)]:
        row.state = state.value
    recorded = step.model_dump(mode="json")
    steps = list(row.steps)
    names = [s.get("name") for s in steps]
    if step.name in names:
        # A step's start may be heard after its end: the end stands.
        if (
            step.duration_ms is None
            and steps[names.index(step.name)].get("duration_ms") is not None
        ):
            return row
        steps[names.index(step.name)] = recorded
    else:
        steps.append(recorded)
    row.steps, row.updated_at = steps, utcnow()
    return row


async def finish(
    *,
    session: AsyncSession,
    migration_id: str,
    state: MigrationState,
    freeze_ms: float | None = None,
    error_code: str | None = None,
    error: str | None = None,
    lost_window: LostWindow | None = None,
) -> Migration | None:
    """How the migration ended. None when it had already ended: the first end stands."""
    if state not in MIGRATION_DONE:
        raise ValueError(f"{state} does not end a migration")
    if lost_window is not None and state is not MigrationState.COLD_RESTARTED:
        raise ValueError("only a cold restart loses a window of time")
    row = await _unfinished(session, migration_id)
    if row is None:
        return None
    row.state, row.freeze_ms = state.value, freeze_ms
    row.error_code, row.error = error_code, (error[:2000] if error else None)
    if lost_window is not None:
        row.lost_from, row.lost_until = lost_window.from_, lost_window.until
    row.updated_at = row.finished_at = utcnow()
    return row


async def asked_by_node(*, session: AsyncSession, device: str, since: datetime) -> int:
    """How many migrations ``device`` asked for itself (pressure, failure, drain) since."""
    query = select(func.count(Migration.id)).where(
        Migration.source_device == device,
        Migration.reason.not_in([MigrationReason.MANUAL.value, MigrationReason.NODE_LOST.value]),
        Migration.created_at >= since,
    )
    return int(await session.scalar(query) or 0)


async def _unfinished(session: AsyncSession, migration_id: str) -> Migration | None:
    row = await session.get(Migration, migration_id, with_for_update=True)
    if row is None:
        raise MigrationNotFound(migration_id)
    return None if MigrationState(row.state) in MIGRATION_DONE else row


# Reads, scoped to what the caller may see: operators see every tenant's migrations.


def _visible(query: Select[Migration], caller: Identity) -> Select[Migration]:
    if caller.is_operator:
        return query
    return query.where(Migration.tenant_id == caller.tenant_id)


async def get(*, session: AsyncSession, caller: Identity, migration_id: str) -> Migration:
    query = _visible(select(Migration), caller).where(Migration.id == migration_id)
    row = await session.scalar(query)
    if row is None:
        raise MigrationNotFound(migration_id)
    return row


async def list_for(
    *,
    session: AsyncSession,
    caller: Identity,
    limit: int,
    cursor: str | None,
    container: str | None,
) -> tuple[list[Migration], str | None]:
    """Newest first."""
    query = _visible(select(Migration), caller)
    if container is not None:
        query = query.where(Migration.container_id == container)
    return await newest_first(
        session,
        query,
        at=Migration.created_at,
        id_=Migration.id,
        limit=limit,
        cursor=cursor,
        scope=f"migrations:{caller.tenant_id}",
    )


def to_view(row: Migration) -> MigrationView:
    lost_window = None
    if row.lost_from is not None and row.lost_until is not None:
        lost_window = LostWindow(from_=row.lost_from, until=row.lost_until)
    return MigrationView(
        id=row.id,
        container=row.container_id,
        source=row.source_device,
        target=row.target_device,
        reason=MigrationReason(row.reason),
        state=MigrationState(row.state),
        steps=[MigrationStep.model_validate(s) for s in row.steps],
        freeze_ms=row.freeze_ms,
        error_code=row.error_code,
        error=row.error,
        lost_window=lost_window,
        level=row.level if row.level is not None else 2,
        keeper=row.keeper,
        via=row.via,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )
