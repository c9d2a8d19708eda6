"""The gateway: users and tenants, the public REST API under /api/v1, and the dashboard.

It owns accounts; everything else it asks the owning service for over REST, passing
the caller's identity as a signed token.
"""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from edgecloud_servicekit.app import create_service_app, expose, open_database, wamp_link
from edgecloud_servicekit.db import transaction
from edgecloud_servicekit.internal_http import ServiceClient

from .accounts import router as accounts_router
from .accounts import service as accounts_service
from .devices import router as devices_router
from .settings import GatewaySettings


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            engine, sessions = open_database(stack, settings)
            if settings.admin_password is not None:
                async with transaction(sessions) as session:
                    await accounts_service.ensure_bootstrap_operator(
                        session=session,
                        username=settings.admin_user,
                        password=settings.admin_password.get_secret_value(),
                        tenant_name=settings.admin_tenant,
                    )
            registry = ServiceClient(
                service="registry", base_url=settings.registry_url, secret=settings.secret
            )
            stack.push_async_callback(registry.aclose)
            wamp = await stack.enter_async_context(wamp_link(settings))
            expose(app, engine=engine, sessions=sessions, wamp=wamp, registry=registry)
            yield

    app = create_service_app(
        settings=settings,
        lifespan=lifespan,
        routers=[accounts_router.router, devices_router.router],
        description="The public edgecloud API. Errors are application/problem+json with a `code`.",
    )

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        # The dashboard lands here with its own issue; until then, the API description.
        return RedirectResponse("/docs")

    return app
