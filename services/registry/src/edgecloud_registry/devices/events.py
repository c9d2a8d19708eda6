"""Announcing device status changes on ``edge.event.device.status``, and grants on
``edge.event.device.grant``.

The change is already committed (to the history table, to the grants) when it is
announced, so a publish lost to a router outage loses nothing: the gateways' event streams
also re-read a tenant's devices every minute.
"""

import logging
from collections.abc import Iterable

from edgecloud_contracts import uris
from edgecloud_contracts.events import DeviceGrantChanged, DeviceStatusChanged
from edgecloud_servicekit.wamp import WampError, WampLink

logger = logging.getLogger(__name__)


class DeviceEventPublisher:
    def __init__(self) -> None:
        self.link: WampLink | None = None

    async def publish(self, changes: Iterable[DeviceStatusChanged]) -> None:
        for change in changes:
            logger.info(
                "device %s is %s (%s)",
                change.key,
                change.status.value,
                change.reason,
                extra={"device": change.key, "status": change.status.value},
            )
            if self.link is None:
                continue
            try:
                await self.link.publish(uris.EVENT_DEVICE_STATUS, change.model_dump(mode="json"))
            except WampError as err:
                logger.warning("status event for %s not published: %s", change.key, err)


async def announce_grant(link: WampLink, change: DeviceGrantChanged) -> None:
    """Tell the gateways at once, so a tenant's live events stop the moment a grant goes."""
    try:
        await link.publish(uris.EVENT_DEVICE_GRANT, change.model_dump(mode="json"))
    except WampError as err:
        logger.warning("grant event for %s not published: %s", change.key, err)
