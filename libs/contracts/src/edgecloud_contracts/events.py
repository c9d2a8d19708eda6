"""Events fanned out over WAMP pub/sub. Durable history lives in the databases."""

from datetime import datetime

from .heartbeat import DeviceStatus, Link, WireModel


class DeviceGrantChanged(WireModel):
    """Published on ``edge.event.device.grant`` once a grant is committed or withdrawn."""

    key: str
    tenant: str
    granted: bool


class DeviceStatusChanged(WireModel):
    """Published on ``edge.event.device.status`` whenever a device's status changes."""

    key: str
    id: str
    status: DeviceStatus
    previous: DeviceStatus | None
    link: Link | None
    reason: str
    at: datetime
