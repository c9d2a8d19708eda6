"""The orchestrator's tables on its real schema, in a SQLite file per test module (and on
PostgreSQL where the database decides: races)."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.containers import Action
from edgecloud_orchestrator.commands import service
from edgecloud_servicekit import migrations
from edgecloud_servicekit.internal_http import ServiceClient
from tests.support.databases import migrated_sessions, migrated_sqlite, session_factory
from tests.support.local_http import serving
from tests.support.stack import PG_PORT, create_pg_database, drop_pg_database


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


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def backend_sessions(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The orchestrator's real schema on each backend: a SQLite file, and a fresh database
    on the machine's PostgreSQL (dropped after the module)."""
    if request.param == "sqlite":
        directory = tmp_path_factory.mktemp("orchestrator-sqlite")
        async with migrated_sessions(directory, "edgecloud_orchestrator") as factory:
            yield factory
        return
    async with migrated_postgres() as factory:
        yield factory


@pytest.fixture(scope="module")
async def pg_sessions() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The orchestrator's real schema on PostgreSQL, where transactions really overlap."""
    async with migrated_postgres() as factory:
        yield factory


@asynccontextmanager
async def migrated_postgres() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    name = await asyncio.to_thread(create_pg_database)
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{PG_PORT}/{name}"
    try:
        await asyncio.to_thread(
            migrations.upgrade, package="edgecloud_orchestrator", database_url=url
        )
        async with session_factory(url) as factory:
            yield factory
    finally:
        await asyncio.to_thread(drop_pg_database, name)


GRANTING_REGISTRY: list[ServiceClient] = []
"""The registry stand-in of the running test, while ``granting_registry`` is used."""


@pytest.fixture
async def granting_registry() -> AsyncIterator[ServiceClient]:
    """A registry that shows every device to every tenant, for tests of what a create
    checks itself (it asks the registry whether the device is still granted, under the
    tenant's lock)."""

    async def device(request: web.Request) -> web.Response:
        return web.json_response({"key": request.match_info["key"]})

    async with serving(device, path="/v1/devices/{key}", method="GET") as url:
        client = ServiceClient(service="registry", base_url=url, secret="s" * 40)
        GRANTING_REGISTRY.append(client)
        try:
            yield client
        finally:
            GRANTING_REGISTRY.remove(client)
            await client.aclose()
