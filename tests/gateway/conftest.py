from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.databases import migrated_sqlite, session_factory


@pytest.fixture(scope="module")
def gateway_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return migrated_sqlite(tmp_path_factory.mktemp("gateway"), "edgecloud_gateway")


@pytest.fixture
async def sessions(gateway_db: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with session_factory(gateway_db) as factory:
        yield factory
