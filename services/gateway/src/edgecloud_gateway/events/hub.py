"""Live events for browsers and scripts: WAMP events fanned out to SSE connections.

Each connection has a small queue; a client too slow to keep up loses its oldest events
rather than holding memory (it can re-read state from the API).
"""

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Gauge
from pydantic import ValidationError

from edgecloud_contracts.events import DeviceGrantChanged
from edgecloud_servicekit.metrics import QUEUE_DEPTH

logger = logging.getLogger(__name__)

QUEUE_SIZE = 256
EVENT_STREAMS = Gauge(
    "edgecloud_event_streams", "Live event streams (SSE) open on this replica", ["service"]
)


@dataclass(eq=False)
class Listener:
    tenant_id: str
    operator: bool
    devices: set[str] = field(default_factory=set)
    """Devices this tenant may see: followed from grant events, and re-read by the connection
    every minute in case one was lost."""
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE)
    )

    def wants(self, kind: str, event: dict[str, Any]) -> bool:
        if kind == "device.status":
            return self.operator or event.get("key") in self.devices
        return event.get("tenant") == self.tenant_id

    def offer(self, kind: str, event: dict[str, Any]) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # drop the oldest
        self.queue.put_nowait((kind, event))


class EventHub:
    def __init__(self) -> None:
        self._listeners: set[Listener] = set()

    def add(self, listener: Listener) -> None:
        self._listeners.add(listener)

    def remove(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    async def refresh_gauges(self) -> None:
        """For /metrics: the open streams, and the events queued for them not yet sent."""
        listeners = list(self._listeners)
        EVENT_STREAMS.labels("gateway").set(len(listeners))
        waiting = sum(listener.queue.qsize() for listener in listeners)
        QUEUE_DEPTH.labels("gateway", "sse_events").set(waiting)

    def _fan_out(self, kind: str, event: Any) -> None:
        if not isinstance(event, dict):
            return
        for listener in list(self._listeners):
            if listener.wants(kind, event):
                listener.offer(kind, event)

    async def on_device_grant(self, event: Any) -> None:
        """A grant given or taken: the tenant's streams see the device from now, or no more."""
        try:
            change = DeviceGrantChanged.model_validate(event)
        except ValidationError:
            logger.warning("malformed grant event dropped")
            return
        for listener in list(self._listeners):
            if listener.operator or listener.tenant_id != change.tenant:
                continue
            if change.granted:
                listener.devices.add(change.key)
            else:
                listener.devices.discard(change.key)

    async def on_device_status(self, event: Any) -> None:
        self._fan_out("device.status", event)

    async def on_container_status(self, event: Any) -> None:
        self._fan_out("container.status", event)

    async def on_command(self, event: Any) -> None:
        self._fan_out("command", event)

    async def on_deployment(self, event: Any) -> None:
        self._fan_out("deployment", event)

    async def on_alert(self, event: Any) -> None:
        self._fan_out("alert", event)

    async def on_migration(self, event: Any) -> None:
        self._fan_out("migration", event)
