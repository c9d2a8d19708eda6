"""Announcing device status changes on ``edge.event.device.status``.

The change is already committed to the history table when it is announced, so a
publish lost to a router outage loses no history.
"""

import logging
from collections.abc import Iterable

from edgecloud_contracts import uris
from edgecloud_contracts.events import DeviceStatusChanged
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
