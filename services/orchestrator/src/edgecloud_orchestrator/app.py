"""The orchestrator: containers (desired spec, owner, node), the command outbox, and
keeping the cloud's view of each container in step with its node."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

import httpx
from fastapi import FastAPI

from edgecloud_contracts import uris
from edgecloud_servicekit.app import create_service_app, expose, open_database, wamp_link
from edgecloud_servicekit.background import BackgroundTasks
from edgecloud_servicekit.internal_http import ServiceClient
from edgecloud_servicekit.observability import scrape_hooks
from edgecloud_servicekit.wamp import Procedure, Subscription

from . import retention
from .commands import router as commands_router
from .commands.dispatch import Dispatcher
from .commands.gauges import OutboxGauge
from .containers import outputs as outputs_router
from .containers import router as containers_router
from .containers.images import PlatformCache
from .containers.rpc import NodeReports
from .copies import router as copies_router
from .copies.rpc import Placements
from .data import router as data_router
from .deployments import router as deployments_router
from .deployments.cleanup import AfterFailure
from .events import EventPublisher
from .settings import OrchestratorSettings
from .withdrawals import router as withdrawals_router


def create_app(settings: OrchestratorSettings | None = None) -> FastAPI:
    settings = settings or OrchestratorSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            engine, sessions = open_database(stack, settings)
            registry = ServiceClient(
                service="registry", base_url=settings.registry_url, secret=settings.secret
            )
            stack.push_async_callback(registry.aclose)
            storage = ServiceClient(
                service="storage", base_url=settings.storage_url, secret=settings.secret
            )
            stack.push_async_callback(storage.aclose)
            image_registry = httpx.AsyncClient(timeout=httpx.Timeout(3.0))
            stack.push_async_callback(image_registry.aclose)
            events = EventPublisher()
            dispatcher = Dispatcher(
                sessions=sessions,
                events=events,
                command_timeout_s=settings.command_timeout_s,
                create_timeout_s=settings.create_timeout_s,
                sweep_interval_s=settings.redelivery_interval_s,
                secret=settings.secret,
                grant_ttl_s=settings.grant_ttl_s,
                on_failure=AfterFailure(sessions=sessions, events=events, storage=storage),
            )
            stack.push_async_callback(dispatcher.close)
            reports = NodeReports(
                sessions=sessions,
                events=events,
                storage=storage,
                secret=settings.secret,
                grant_ttl_s=settings.grant_ttl_s,
            )
            placements = Placements(sessions=sessions, events=events)
            background = await stack.enter_async_context(BackgroundTasks())
            background.start("command-delivery", dispatcher.run)
            background.start(
                "retention",
                lambda: retention.prune_forever(
                    sessions, keep_data=timedelta(days=settings.data_retention_days)
                ),
            )
            stack.callback(scrape_hooks(app).add(OutboxGauge(sessions), max_age_s=2))
            wamp = wamp_link(
                settings,
                procedures=[
                    Procedure(uris.NODE_REPORT, reports.report, with_details=True),
                    Procedure(uris.LOG_SLOT, reports.log_slot, with_details=True),
                    Procedure(uris.LOG_STREAM, reports.log_stream, with_details=True),
                    Procedure(uris.PLACEMENTS, placements.check, with_details=True),
                ],
                subscriptions=[Subscription(uris.EVENT_DEVICE_STATUS, dispatcher.on_device_status)],
            )
            events.link = wamp
            await stack.enter_async_context(wamp)
            expose(
                app,
                engine=engine,
                sessions=sessions,
                wamp=wamp,
                registry=registry,
                storage=storage,
                image_platforms=PlatformCache(
                    image_registry, trusted=frozenset(settings.trusted_image_registries)
                ),
                dispatcher=dispatcher,
                events=events,
                background=background,
            )
            yield

    return create_service_app(
        settings=settings,
        lifespan=lifespan,
        # Before the containers router: its /{id}/{action} would take /deploy and /files.
        routers=[
            deployments_router.router,
            outputs_router.router,
            copies_router.router,
            data_router.router,
            containers_router.router,
            containers_router.images_router,
            containers_router.nodes_router,
            withdrawals_router.router,
            commands_router.router,
        ],
        description="Containers (desired spec, owner, node), the command outbox, deployments.",
    )
