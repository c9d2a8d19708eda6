"""Container and command changes on ``edge.event.container.status`` and ``edge.event.command``.

Every event carries the owning tenant, so the gateway can pass it to that tenant only.
The changes themselves are already committed when they are announced.
"""

import logging
from typing import Any

from edgecloud_contracts import uris
from edgecloud_contracts.placements import RetainedCopy
from edgecloud_servicekit.wamp import WampError, WampLink

from .commands.models import CommandRow
from .containers.models import Container

logger = logging.getLogger(__name__)


class EventPublisher:
    def __init__(self) -> None:
        self.link: WampLink | None = None

    async def _publish(self, topic: str, event: dict[str, Any]) -> None:
        if self.link is None:
            return
        try:
            await self.link.publish(topic, event)
        except WampError as err:
            logger.warning("event on %s not published: %s", topic, err)

    async def container(self, row: Container) -> None:
        await self._publish(
            uris.EVENT_CONTAINER_STATUS,
            {
                "tenant": row.tenant_id,
                "id": row.id,
                "name": row.docker_name,
                "device": row.device_key,
                "state": row.state,
                "desired_state": row.desired_state,
                "exit_code": row.exit_code,
                "error": row.error,
                "at": row.updated_at.isoformat(),
            },
        )

    async def copy(self, row: Container, copy: RetainedCopy) -> None:
        """An old copy of the container found on a node that came back: stopped, kept."""
        await self._publish(
            uris.EVENT_CONTAINER_STATUS,
            {
                "tenant": row.tenant_id,
                "id": row.id,
                "name": row.docker_name,
                "device": row.device_key,
                "state": row.state,
                "copy": copy.model_dump(mode="json"),
                "at": copy.found_at.isoformat(),
            },
        )

    async def deployment(self, event: dict[str, Any]) -> None:
        await self._publish(uris.EVENT_DEPLOYMENT, event)

    async def command(self, row: CommandRow, **extra: Any) -> None:
        await self._publish(
            uris.EVENT_COMMAND,
            {
                "tenant": row.tenant_id,
                "id": row.id,
                "container": row.container_id,
                "device": row.device_key,
                "action": row.action,
                "state": row.state,
                "error_code": row.error_code,
                **extra,
            },
        )
