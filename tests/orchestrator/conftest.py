"""The orchestrator's tables on its real schema, in a SQLite file per test module."""

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.containers import Action
from edgecloud_orchestrator.commands import service
from tests.support.databases import migrated_sqlite, session_factory


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return migrated_sqlite(tmp_path_factory.mktemp("orchestrator"), "edgecloud_orchestrator")


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with session_factory(database_url) as factory:
        yield factory


def queue(
    session: AsyncSession,
    device: str,
    ttl: timedelta = timedelta(hours=1),
    action: Action = Action.START,
) -> str:
    """A command for ``device`` in the outbox (not sent); its id."""
    row = service.enqueue(
        session,
        tenant_id="t",
        container_id="c-1",
        device_key=device,
        docker_name="u-web",
        action=action,
        ttl=ttl,
    )
    return row.id
