"""The migration-scheduler: migrations: peer selection, plans, states and timings.

Its tables and API arrive with the peer migration issue (#8).
Until then it runs like every service: it opens its database and WAMP session in its
lifespan and answers /healthz and /metrics.
"""

from fastapi import FastAPI

from edgecloud_servicekit.app import create_service_app, plain_lifespan

from .settings import MigrationSchedulerSettings


def create_app(settings: MigrationSchedulerSettings | None = None) -> FastAPI:
    settings = settings or MigrationSchedulerSettings()
    return create_service_app(
        settings=settings,
        lifespan=plain_lifespan(settings),
        description="migrations: peer selection, plans, states and timings.",
    )
