"""Internal REST: migration history, on behalf of the gateway's caller."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status
from pydantic import Field

from edgecloud_contracts.migrations import (
    MigrateRequest,
    MigrationAccepted,
    MigrationPage,
    MigrationReason,
    MigrationView,
)
from edgecloud_contracts.text import OBJECT_ID

from ..deps import CallerDep, SessionsDep
from . import service

router = APIRouter(prefix="/v1/migrations", tags=["migrations"])


class MigrateContainer(MigrateRequest):
    container: Annotated[str, Field(max_length=64, pattern=OBJECT_ID)]


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=MigrationAccepted)
async def migrate(body: MigrateContainer, caller: CallerDep, request: Request) -> MigrationAccepted:
    """Move a container of the caller's tenant to ``device``, or to the peer chosen for it;
    follow it at ``GET /v1/migrations/{id}`` or in the events."""
    coordinator = request.app.state.coordinator
    migration = await coordinator.start(
        caller=caller,
        container_id=body.container,
        device=body.device,
        reason=MigrationReason.MANUAL,
    )
    return MigrationAccepted(migration=migration)


@router.get("", response_model=MigrationPage)
async def list_migrations(
    caller: CallerDep,
    sessions: SessionsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    container: Annotated[str | None, Query(max_length=64, pattern=OBJECT_ID)] = None,
) -> MigrationPage:
    """The tenant's migrations (every tenant's for operators), newest first."""
    async with sessions() as session:
        rows, next_cursor = await service.list_for(
            session=session, caller=caller, limit=limit, cursor=cursor, container=container
        )
    return MigrationPage(items=[service.to_view(r) for r in rows], next_cursor=next_cursor)


@router.get("/{migration_id}", response_model=MigrationView)
async def get_migration(
    migration_id: Annotated[str, Path(max_length=64, pattern=OBJECT_ID)],
    caller: CallerDep,
    sessions: SessionsDep,
) -> MigrationView:
    async with sessions() as session:
        return service.to_view(
            await service.get(session=session, caller=caller, migration_id=migration_id)
        )
