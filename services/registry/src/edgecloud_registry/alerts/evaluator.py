"""The alert evaluator: every few seconds, every rule against its target's latest state.

Rules are locked while a round evaluates them, so several registry replicas may run it
side by side: each raise and clear is recorded and announced once.
"""

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_servicekit.db import transaction, utcnow

from . import service
from .events import AlertAnnouncer
from .schemas import Notice

logger = logging.getLogger(__name__)


class AlertEvaluator:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        announcer: AlertAnnouncer,
        interval_s: float,
    ) -> None:
        self._sessions = sessions
        self._announcer = announcer
        self._interval = interval_s
        self._healthy = True

    async def evaluate_once(self) -> list[Notice]:
        async with transaction(self._sessions) as session:
            notices = await service.evaluate(session=session, now=utcnow())
        await self._announcer.announce(notices)
        return notices

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.evaluate_once()
            except Exception as err:  # keep evaluating; log the breakage once
                if self._healthy:
                    logger.error("alert evaluation failed: %s", err)
                    self._healthy = False
                continue
            if not self._healthy:
                logger.info("alert evaluation recovered")
                self._healthy = True
