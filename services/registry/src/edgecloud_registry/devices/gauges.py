"""The registry's gauges on /metrics: its heartbeat write queue, and the devices that have a
live session to the router now. Read when /metrics is scraped (servicekit ScrapeHooks)."""

from prometheus_client import Gauge
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.heartbeat import DeviceStatus
from edgecloud_servicekit.metrics import QUEUE_DEPTH

from .ingest import HeartbeatIngest
from .models import Device

SERVICE = "registry"
DEVICES_CONNECTED = Gauge(
    "edgecloud_devices_connected",
    "Devices with a live WAMP session that are not offline (the whole fleet's, as the "
    "registry's database has it: every replica reports the same)",
    ["service"],
)


class HeartbeatQueueGauge:
    """Heartbeats received and not yet written (the group-commit writer's backlog)."""

    def __init__(self, ingest: HeartbeatIngest) -> None:
        self._ingest = ingest

    async def __call__(self) -> None:
        QUEUE_DEPTH.labels(SERVICE, "heartbeat_writes").set(self._ingest.backlog)


class ConnectedDevicesGauge:
    """One indexed count; run at most every few seconds however often /metrics is read."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def __call__(self) -> None:
        async with self._sessions() as session:
            connected = await session.scalar(
                select(func.count())
                .select_from(Device)
                .where(
                    Device.wamp_session.is_not(None),
                    Device.status != DeviceStatus.OFFLINE.value,
                )
            )
        DEVICES_CONNECTED.labels(SERVICE).set(connected or 0)
