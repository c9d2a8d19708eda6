"""The migration-scheduler: chooses peers for containers that must move, sets both agents
going, follows their steps, and keeps each migration's plan, state and timings."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from edgecloud_contracts import uris
from edgecloud_servicekit.app import create_service_app, expose, open_database, wamp_link
from edgecloud_servicekit.background import BackgroundTasks
from edgecloud_servicekit.internal_http import ServiceClient
from edgecloud_servicekit.leases import Lease
from edgecloud_servicekit.wamp import Procedure

from .moves import router as moves_router
from .moves.coordinator import Coordinator
from .moves.models import SchedulerLease
from .moves.rpc import MigrationRpc
from .moves.watchdog import NodeLossWatch
from .placement.planner import Policy
from .settings import MigrationSchedulerSettings


def create_app(settings: MigrationSchedulerSettings | None = None) -> FastAPI:
    settings = settings or MigrationSchedulerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            engine, sessions = open_database(stack, settings)
            clients = {}
            for name, url in (
                ("registry", settings.registry_url),
                ("orchestrator", settings.orchestrator_url),
            ):
                clients[name] = ServiceClient(service=name, base_url=url, secret=settings.secret)
                stack.push_async_callback(clients[name].aclose)
            coordinator = Coordinator(
                sessions=sessions,
                registry=clients["registry"],
                orchestrator=clients["orchestrator"],
                policy=Policy(
                    max_rtt_ms=settings.max_rtt_ms, unknown_rtt_ms=settings.unknown_rtt_ms
                ),
                expect_timeout_s=settings.expect_timeout_s,
                node_moves_per_minute=settings.node_moves_per_minute,
                move_timeout_s=settings.move_timeout_s,
            )
            stack.push_async_callback(coordinator.close)
            rpc = MigrationRpc(coordinator)
            wamp = wamp_link(
                settings,
                procedures=[
                    Procedure(uris.MIGRATION_REPORT, rpc.report, with_details=True),
                    Procedure(uris.MIGRATION_REQUEST, rpc.request, with_details=True),
                ],
            )
            coordinator.link = wamp
            await stack.enter_async_context(wamp)
            watch = NodeLossWatch(
                coordinator=coordinator,
                registry=clients["registry"],
                orchestrator=clients["orchestrator"],
                link=wamp,
                lost_after_s=settings.node_lost_after_s,
                check_every_s=settings.node_loss_check_every_s,
                max_lost_share=settings.max_lost_share,
                lease=Lease(
                    sessions=sessions,
                    model=SchedulerLease,
                    name="node-loss-watch",
                    ttl_s=settings.node_loss_check_every_s * 3,
                ),
            )
            stack.push_async_callback(watch.close)
            background = await stack.enter_async_context(BackgroundTasks())
            background.start("node-loss-watch", watch.run)
            expose(
                app,
                engine=engine,
                sessions=sessions,
                wamp=wamp,
                coordinator=coordinator,
                background=background,
            )
            yield

    return create_service_app(
        settings=settings,
        lifespan=lifespan,
        routers=[moves_router.router],
        description="migrations: peer selection, plans, states and timings.",
    )
