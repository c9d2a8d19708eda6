"""The storage: artifacts: application archives, command scripts, logs and result files.

Its tables and API arrive with the applications issue (#5).
Until then it runs like every service: it opens its database and WAMP session in its
lifespan and answers /healthz and /metrics.
"""

from fastapi import FastAPI

from edgecloud_servicekit.app import create_service_app, plain_lifespan

from .settings import StorageSettings


def create_app(settings: StorageSettings | None = None) -> FastAPI:
    settings = settings or StorageSettings()
    return create_service_app(
        settings=settings,
        lifespan=plain_lifespan(settings),
        description="artifacts: application archives, command scripts, logs and result files.",
    )
