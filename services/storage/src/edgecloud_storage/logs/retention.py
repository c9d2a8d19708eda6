"""The operator's retention of shipped logs: a sweep in the background."""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_servicekit.db import transaction

from . import service

logger = logging.getLogger(__name__)


async def sweep_once(sessions: async_sessionmaker[AsyncSession], *, retention: timedelta) -> int:
    async with transaction(sessions) as session:
        return await service.sweep(session=session, received_before=datetime.now(UTC) - retention)


async def sweep_forever(
    sessions: async_sessionmaker[AsyncSession], *, retention: timedelta, every_s: float
) -> None:
    while True:
        try:
            swept = await sweep_once(sessions, retention=retention)
            if swept:
                logger.info("swept %d log segments past their retention", swept)
        except Exception as err:  # the database may be away; try again next round
            logger.warning("sweeping logs failed: %s", err)
        await asyncio.sleep(every_s)
