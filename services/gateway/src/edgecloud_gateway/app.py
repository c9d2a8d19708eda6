"""The gateway: users and tenants, the public REST API under /api/v1, and the dashboard.

It owns accounts; everything else it asks the owning service for over REST, passing
the caller's identity as a signed token.
"""

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts import uris
from edgecloud_servicekit.app import create_service_app, expose, open_database, wamp_link
from edgecloud_servicekit.background import BackgroundTasks
from edgecloud_servicekit.db import transaction, utcnow
from edgecloud_servicekit.internal_http import ServiceClient
from edgecloud_servicekit.observability import scrape_hooks
from edgecloud_servicekit.wamp import Subscription

from . import dashboard
from .access.live import LiveConnections
from .accounts import router as accounts_router
from .accounts import service as accounts_service
from .accounts import throttle
from .accounts import users_router as accounts_users_router
from .alerts import router as alerts_router
from .artifacts import router as artifacts_router
from .audit import router as audit_router
from .containers import router as containers_router
from .devices import interfaces as interfaces_router
from .devices import router as devices_router
from .events import router as events_router
from .events.hub import EventHub
from .migration_history import router as migration_history_router
from .security_headers import SecurityHeaders, content_security_policy, script_hash
from .settings import GatewaySettings
from .tenants import ratelimit
from .tenants import router as tenants_router
from .tenants.ratelimit import RateLimiter
from .terminal import router as terminal_router
from .tokens import router as tokens_router

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


async def housekeeping(sessions: async_sessionmaker[AsyncSession], every_s: float = 300) -> None:
    """Drop finished rate windows and stale login throttles."""
    while True:
        try:
            async with transaction(sessions) as session:
                await ratelimit.prune(session=session)
                await throttle.prune(session=session, older_than=utcnow() - timedelta(days=1))
        except Exception as err:  # best effort; retried next round
            logger.warning("housekeeping failed: %s", err)
        await asyncio.sleep(every_s)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            engine, sessions = open_database(stack, settings)
            if settings.admin_password is not None:
                # Replicas starting together race to make the operator: one insert wins.
                with contextlib.suppress(IntegrityError):
                    async with transaction(sessions) as session:
                        await accounts_service.ensure_bootstrap_operator(
                            session=session,
                            username=settings.admin_user,
                            password=settings.admin_password.get_secret_value(),
                            tenant_name=settings.admin_tenant,
                            quotas=settings.default_quotas,
                        )
            background = await stack.enter_async_context(BackgroundTasks())
            background.start("housekeeping", lambda: housekeeping(sessions))
            rate_limiter = RateLimiter(sessions)
            background.start("api-usage", rate_limiter.run)
            registry = ServiceClient(
                service="registry", base_url=settings.registry_url, secret=settings.secret
            )
            stack.push_async_callback(registry.aclose)
            # The orchestrator waits up to its reply_wait_s (20 s) for a node's answer.
            orchestrator = ServiceClient(
                service="orchestrator",
                base_url=settings.orchestrator_url,
                secret=settings.secret,
                timeout_s=35.0,
            )
            stack.push_async_callback(orchestrator.aclose)
            storage = ServiceClient(
                service="storage", base_url=settings.storage_url, secret=settings.secret
            )
            stack.push_async_callback(storage.aclose)
            scheduler = ServiceClient(
                service="migration-scheduler",
                base_url=settings.scheduler_url,
                secret=settings.secret,
            )
            stack.push_async_callback(scheduler.aclose)
            hub = EventHub()
            live = LiveConnections(
                sessions, registry, settings.live_shares, recheck_s=settings.live_recheck_s
            )
            background.start("live-access", live.run)

            async def on_device_grant(event: object) -> None:
                await hub.on_device_grant(event)
                await live.on_device_grant(event)

            stack.callback(scrape_hooks(app).add(hub.refresh_gauges))
            wamp = await stack.enter_async_context(
                wamp_link(
                    settings,
                    subscriptions=[
                        Subscription(uris.EVENT_DEVICE_STATUS, hub.on_device_status),
                        Subscription(uris.EVENT_DEVICE_GRANT, on_device_grant),
                        Subscription(uris.EVENT_CONTAINER_STATUS, hub.on_container_status),
                        Subscription(uris.EVENT_COMMAND, hub.on_command),
                        Subscription(uris.EVENT_DEPLOYMENT, hub.on_deployment),
                        Subscription(uris.EVENT_ALERT, hub.on_alert),
                        Subscription(uris.EVENT_MIGRATION, hub.on_migration),
                    ],
                )
            )
            expose(
                app,
                engine=engine,
                sessions=sessions,
                wamp=wamp,
                registry=registry,
                orchestrator=orchestrator,
                storage=storage,
                scheduler=scheduler,
                events=hub,
                live=live,
                rate_limiter=rate_limiter,
                background=background,
            )
            yield

    app = create_service_app(
        settings=settings,
        lifespan=lifespan,
        routers=[
            accounts_router.router,
            accounts_users_router.router,
            tokens_router.router,
            tenants_router.router,
            audit_router.router,
            devices_router.router,
            interfaces_router.router,
            # Before containers: its /containers/{id}/{action} would take /exec.
            terminal_router.router,
            containers_router.router,
            artifacts_router.router,
            events_router.router,
            alerts_router.router,
            migration_history_router.router,
        ],
        description="The public edgecloud API. Errors are application/problem+json with a `code`.",
    )

    # Outermost but for Starlette's own error middleware: problems, refusals of the body
    # limit and every page carry the headers too.
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/docs", include_in_schema=False)
    async def api_explorer() -> HTMLResponse:
        """The API explorer, from vendored assets (infra/setup/assets.sh), no CDN; its one
        inline script (the explorer's settings) runs by its hash."""
        explorer = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="edgecloud API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png",
            # Its default sends the API description to validator.swagger.io for a badge.
            swagger_ui_parameters={"validatorUrl": None},
        )
        inline = re.findall(r"<script>(.*?)</script>", bytes(explorer.body).decode(), re.S)
        explorer.headers["Content-Security-Policy"] = content_security_policy(
            inline_styles=True, script_hashes=[script_hash(source) for source in inline]
        )
        return explorer

    dashboard.install(app)
    return app
