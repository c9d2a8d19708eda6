"""The migration-scheduler: migrations: peer selection, plans, states and timings.

So far it keeps the migration records and shows their history; peer selection, the
instructions to agents and the triggers arrive with the peer migration issue (#8).
"""

from fastapi import FastAPI

from edgecloud_servicekit.app import create_service_app, plain_lifespan

from .moves import router as moves_router
from .settings import MigrationSchedulerSettings


def create_app(settings: MigrationSchedulerSettings | None = None) -> FastAPI:
    settings = settings or MigrationSchedulerSettings()
    return create_service_app(
        settings=settings,
        lifespan=plain_lifespan(settings),
        routers=[moves_router.router],
        description="migrations: peer selection, plans, states and timings.",
    )
