"""The scheduler's real schema in a fresh SQLite file per test (a module may keep one)."""

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.databases import migrated_sessions


@pytest.fixture
async def sessions(tmp_path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with migrated_sessions(tmp_path, "edgecloud_migration_scheduler") as factory:
        yield factory
