"""The orchestrator: containers (desired spec, owner, node), the command outbox and deployments.

Its tables and API arrive with the containers issue (#4).
Until then it runs like every service: it opens its database and WAMP session in its
lifespan and answers /healthz and /metrics.
"""

from fastapi import FastAPI

from edgecloud_servicekit.app import create_service_app, plain_lifespan

from .settings import OrchestratorSettings


def create_app(settings: OrchestratorSettings | None = None) -> FastAPI:
    settings = settings or OrchestratorSettings()
    return create_service_app(
        settings=settings,
        lifespan=plain_lifespan(settings),
        description="containers (desired spec, owner, node), the command outbox and deployments.",
    )
