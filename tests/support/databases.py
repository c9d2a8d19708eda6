"""A service's real schema in a throwaway SQLite file, for in-process tests."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_servicekit import migrations
from edgecloud_servicekit.db import create_engine, create_session_factory


def migrated_sqlite(directory: Path, package: str) -> str:
    url = f"sqlite+aiosqlite:///{directory / package}.db"
    migrations.upgrade(package=package, database_url=url)
    return url


@asynccontextmanager
async def session_factory(url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def migrated_sessions(
    directory: Path, package: str
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the service's real schema in a fresh SQLite file. The schema is made in
    a thread: alembic's async env runs an event loop of its own."""
    url = await asyncio.to_thread(migrated_sqlite, directory, package)
    async with session_factory(url) as factory:
        yield factory
