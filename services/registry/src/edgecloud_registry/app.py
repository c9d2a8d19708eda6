"""The registry: devices, their credentials, heartbeats, liveness, metrics history, and
alert rules with the alerts they raise.

Everything the service does is listed here: its REST routers, its WAMP procedures and
subscriptions, and its background tasks.
"""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from edgecloud_contracts import uris
from edgecloud_servicekit.app import create_service_app, expose, open_database, wamp_link
from edgecloud_servicekit.background import BackgroundTasks
from edgecloud_servicekit.leases import Lease
from edgecloud_servicekit.observability import scrape_hooks
from edgecloud_servicekit.wamp import Procedure, Subscription

from .alerts import router as alerts_router
from .alerts.evaluator import AlertEvaluator
from .alerts.events import AlertAnnouncer
from .alerts.webhooks import WebhookSender
from .credentials import router as credentials_router
from .credentials.rpc import DeviceAuthenticator
from .devices import router as devices_router
from .devices.events import DeviceEventPublisher
from .devices.gauges import ConnectedDevicesGauge, HeartbeatQueueGauge
from .devices.ingest import HeartbeatIngest
from .devices.liveness import Liveness
from .devices.models import RegistryLease
from .devices.rpc import HeartbeatRpc
from .interfaces import router as interfaces_router
from .settings import RegistrySettings


def create_app(settings: RegistrySettings | None = None) -> FastAPI:
    settings = settings or RegistrySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            engine, sessions = open_database(stack, settings)

            events = DeviceEventPublisher()
            ingest = HeartbeatIngest(
                sessions=sessions,
                events=events,
                missed_heartbeats=settings.missed_heartbeats,
                batch_max=settings.heartbeat_batch_max,
                queue_max=settings.heartbeat_queue_max,
                metrics_sample_interval_s=settings.metrics_sample_interval_s,
            )
            liveness = Liveness(
                sessions=sessions,
                events=events,
                sweep_interval_s=settings.liveness_sweep_interval_s,
                metrics_retention=timedelta(days=settings.metrics_retention_days),
                status_retention=timedelta(days=settings.status_history_retention_days),
                lease=Lease(
                    sessions=sessions,
                    model=RegistryLease,
                    name="liveness-sweep",
                    ttl_s=max(5 * settings.liveness_sweep_interval_s, 5.0),
                ),
            )
            stack.push_async_callback(liveness.close)  # after the background tasks stop
            webhooks = WebhookSender(
                sessions=sessions,
                timeout_s=settings.alert_webhook_timeout_s,
                attempts=settings.alert_webhook_attempts,
                backoff_s=settings.alert_webhook_backoff_s,
                private_targets=bool(settings.alert_webhook_private_targets),
            )
            alert_announcer = AlertAnnouncer(webhooks)
            # Every replica evaluates: rules are row-locked per round, so each raise and clear
            # is announced once (a leader lease would spare the other replicas' reads).
            evaluator = AlertEvaluator(
                sessions=sessions, announcer=alert_announcer, interval_s=settings.alert_interval_s
            )
            background = await stack.enter_async_context(BackgroundTasks())
            background.start("heartbeat-writer", ingest.run)
            background.start("liveness-sweep", liveness.sweep_forever)
            background.start("history-retention", liveness.prune_forever)
            background.start("alert-evaluator", evaluator.run_forever)
            background.start("alert-webhooks", webhooks.run)

            gauges = scrape_hooks(app)
            stack.callback(gauges.add(HeartbeatQueueGauge(ingest)))
            stack.callback(gauges.add(ConnectedDevicesGauge(sessions), max_age_s=2))

            beats = HeartbeatRpc(ingest, sessions)
            wamp = wamp_link(
                settings,
                procedures=[
                    Procedure(uris.AUTHENTICATE_DEVICE, DeviceAuthenticator(sessions).authenticate),
                    Procedure(uris.HEARTBEAT, beats.heartbeat, with_details=True),
                    Procedure(uris.COMPACT_BEAT, beats.compact_beat, with_details=True),
                ],
                subscriptions=[
                    Subscription(uris.META_SESSION_ON_JOIN, liveness.on_session_join),
                    Subscription(uris.META_SESSION_ON_LEAVE, liveness.on_session_leave),
                ],
            )
            events.link = wamp
            liveness.router_answers = wamp.router_answers
            alert_announcer.link = wamp
            await stack.enter_async_context(wamp)

            expose(
                app,
                engine=engine,
                sessions=sessions,
                wamp=wamp,
                background=background,
                ingest=ingest,
                alert_announcer=alert_announcer,
            )
            yield

    return create_service_app(
        settings=settings,
        lifespan=lifespan,
        routers=[
            devices_router.router,
            interfaces_router.router,
            credentials_router.router,
            alerts_router.router,
        ],
        description="Devices, device credentials, heartbeats, liveness, metrics history, "
        "alert rules and alerts.",
    )
