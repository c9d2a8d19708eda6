"""The orchestrator: containers (desired spec, owner, node), the command outbox and deployments.

Its tables and API arrive with the containers issue (#4).
Until then it runs like every service: its database and WAMP session are opened in
the lifespan, and it answers /healthz and /metrics.
"""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from edgecloud_servicekit.app import create_service_app, expose, open_database, wamp_link

from .settings import OrchestratorSettings


def create_app(settings: OrchestratorSettings | None = None) -> FastAPI:
    settings = settings or OrchestratorSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            engine, sessions = open_database(stack, settings)
            wamp = await stack.enter_async_context(wamp_link(settings))
            expose(app, engine=engine, sessions=sessions, wamp=wamp)
            yield

    return create_service_app(
        settings=settings,
        lifespan=lifespan,
        description="containers (desired spec, owner, node), the command outbox and deployments.",
    )
