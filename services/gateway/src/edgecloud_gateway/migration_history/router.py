"""Public REST: migration history, answered by the migration-scheduler.

The folder is not named ``migrations``: that is the gateway's own schema revisions.
"""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from edgecloud_contracts.migrations import MigrationPage, MigrationView
from edgecloud_contracts.text import OBJECT_ID
from edgecloud_servicekit.internal_http import passed_on

from ..deps import IdentityDep, PathId, SchedulerDep

router = APIRouter(prefix="/api/v1/migrations", tags=["migrations"])


@router.get("", response_model=MigrationPage)
async def list_migrations(
    identity: IdentityDep,
    scheduler: SchedulerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    container: Annotated[str | None, Query(max_length=64, pattern=OBJECT_ID)] = None,
) -> Response:
    """The tenant's migrations, newest first; ``container`` keeps one container's."""
    params = {"limit": limit, "cursor": cursor, "container": container}
    return passed_on(
        await scheduler.request("GET", "/v1/migrations", identity=identity, params=params)
    )


@router.get("/{migration_id}", response_model=MigrationView)
async def get_migration(
    migration_id: PathId, identity: IdentityDep, scheduler: SchedulerDep
) -> Response:
    """One migration: where the container went, why, and each step's timing."""
    return passed_on(
        await scheduler.request("GET", f"/v1/migrations/{migration_id}", identity=identity)
    )
