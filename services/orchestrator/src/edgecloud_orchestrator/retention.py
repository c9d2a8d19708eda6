"""Forgetting what is kept only for a while: collected data points, the ids of the
reports nodes sent (kept to apply a repeated report once), and the port rows of containers
gone from their nodes (free already: containers/ports.py)."""

import asyncio
import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_servicekit.db import transaction

from .containers import ports
from .data import service as data_service
from .reports import service as reports_service

logger = logging.getLogger(__name__)


async def prune_forever(
    sessions: async_sessionmaker[AsyncSession], *, keep_data: timedelta, every_s: float = 3600
) -> None:
    while True:
        try:
            async with transaction(sessions) as session:
                await data_service.prune(session=session, keep=keep_data)
                await reports_service.prune(session=session)
                await ports.prune(session=session)
        except Exception as err:  # the database may be away; try again next round
            logger.warning("pruning old data points and report ids failed: %s", err)
        await asyncio.sleep(every_s)
