"""Marking devices offline: when heartbeats stop, and at once when a session leaves.

Both paths update the database with a row lock, so any number of registry replicas
can run them side by side and each transition is recorded and announced once.
"""

import asyncio
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts import uris
from edgecloud_servicekit.db import transaction, utcnow

from . import service
from .events import DeviceEventPublisher

logger = logging.getLogger(__name__)


class Liveness:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        events: DeviceEventPublisher,
        sweep_interval_s: float,
        metrics_retention: timedelta,
        status_retention: timedelta,
    ) -> None:
        self._sessions = sessions
        self._events = events
        self._sweep_interval = sweep_interval_s
        self._metrics_retention = metrics_retention
        self._status_retention = status_retention
        self._healthy = True

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            try:
                async with transaction(self._sessions) as session:
                    changes = await service.mark_overdue_offline(session=session)
            except Exception as err:  # keep sweeping; log the breakage once
                if self._healthy:
                    logger.error("liveness sweep failed: %s", err)
                    self._healthy = False
                continue
            if not self._healthy:
                logger.info("liveness sweep recovered")
                self._healthy = True
            await self._events.publish(changes)

    async def prune_forever(self, every_s: float = 300.0) -> None:
        while True:
            try:
                now = utcnow()
                async with transaction(self._sessions) as session:
                    await service.prune_history(
                        session=session,
                        metrics_before=now - self._metrics_retention,
                        status_before=now - self._status_retention,
                    )
            except Exception as err:  # retention is best effort; retried next round
                logger.warning("pruning history failed: %s", err)
            await asyncio.sleep(every_s)

    async def on_session_join(self, details: dict[str, Any]) -> None:
        """``wamp.session.on_join``: remember which session a known device uses."""
        if details.get("authrole") != uris.ROLE_DEVICE:
            return
        async with transaction(self._sessions) as session:
            await service.attach_session(
                session=session,
                device_key=str(details.get("authid")),
                wamp_session=int(details["session"]),
            )

    async def on_session_leave(self, session_id: int, *_: Any) -> None:
        """``wamp.session.on_leave``: a device whose session left is offline now."""
        async with transaction(self._sessions) as session:
            changes = await service.mark_session_closed(
                session=session, wamp_session=int(session_id)
            )
        await self._events.publish(changes)
