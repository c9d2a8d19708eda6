"""Migration records stored straight into the stack's migration-scheduler database.

Nothing writes migrations yet: peer migration (issue #8) will, through the scheduler's
own service functions. Until then the tests of the read API store their records through
those same functions, on the database the running scheduler reads.
"""

from datetime import timedelta

from edgecloud_contracts.migrations import MigrationReason, MigrationState, MigrationStep
from edgecloud_migration_scheduler.moves import service
from edgecloud_servicekit.db import transaction, utcnow

from .databases import session_factory
from .stack import Stack


def scheduler_database_url(stack: Stack) -> str:
    """Where the stack's scheduler keeps its tables (as its settings choose it)."""
    if stack.database_url:
        return stack.database_url
    return f"sqlite+aiosqlite:///{stack.workdir / 'var' / 'migration-scheduler.db'}"


async def store_migration(
    stack: Stack,
    *,
    tenant_id: str,
    container_id: str,
    reason: MigrationReason = MigrationReason.CPU,
    completed: bool = True,
) -> str:
    """A migration from ``node_a`` to ``node_b``, completed with its steps timed (or
    still transferring); returns its id."""
    async with session_factory(scheduler_database_url(stack)) as sessions:
        async with transaction(sessions) as session:
            row = service.record_migration(
                session,
                tenant_id=tenant_id,
                container_id=container_id,
                source_device="node_a",
                reason=reason,
            )
        async with transaction(sessions) as session:
            await service.set_plan(
                session=session,
                migration_id=row.id,
                target_device="node_b",
                plan={"candidates": {"node_b": {"cost": 0.4}}},
            )
            started = utcnow() - timedelta(seconds=2)
            for offset, name in enumerate(("select_peer", "configuration", "dependencies")):
                await service.add_step(
                    session=session,
                    migration_id=row.id,
                    step=MigrationStep(
                        name=name,
                        started_at=started + timedelta(milliseconds=300 * offset),
                        duration_ms=250.0,
                    ),
                    state=MigrationState.TRANSFERRING,
                )
            if completed:
                await service.finish(
                    session=session,
                    migration_id=row.id,
                    state=MigrationState.COMPLETED,
                    freeze_ms=120.0,
                )
    return row.id
