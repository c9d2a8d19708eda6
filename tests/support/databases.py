"""A service's real schema in a throwaway SQLite file, for in-process tests."""

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
