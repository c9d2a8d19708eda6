"""WAMP adapter: ``edge.orchestrator.placements``, a (re)joining node's first question."""

import logging
from typing import Any

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallDetails
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts import errors, uris
from edgecloud_contracts.placements import PlacementCheck
from edgecloud_servicekit.db import transaction

from ..events import EventPublisher
from . import service

logger = logging.getLogger(__name__)


class Placements:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], events: EventPublisher
    ) -> None:
        self._sessions = sessions
        self._events = events

    async def check(self, payload: Any = None, *, details: CallDetails) -> dict[str, Any]:
        """``edge.orchestrator.placements(check)``: which of the copies the calling node
        holds are its own; the others are recorded as kept copies and their tenants told."""
        device_key = details.caller_authid
        if details.caller_authrole != uris.ROLE_DEVICE or not device_key:
            raise ApplicationError(errors.NOT_AUTHORIZED, "only devices ask for placements")
        try:
            asked = PlacementCheck.model_validate(payload)
        except ValidationError as err:
            raise ApplicationError(
                errors.INVALID_ARGUMENT, "malformed placement check", str(err)[:500]
            ) from err
        async with transaction(self._sessions) as session:
            answer, news = await service.check(
                session=session, device_key=device_key, held=asked.held
            )
        for container, copy in news:
            logger.warning(
                "%s holds an old copy of %s (%s): stopped and kept",
                device_key,
                container.id,
                copy.reason,
                extra={"device": device_key, "container": container.id},
            )
            await self._events.copy(container, service.to_view(copy))
        return answer.model_dump(mode="json")
