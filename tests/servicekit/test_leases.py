"""Leases on the migration scheduler's real schema, on SQLite and on PostgreSQL: one holder at
a time among replicas racing for it, renewal by the holder, take-over once it lapses, and
release on shutdown."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_migration_scheduler.moves.models import SchedulerLease
from edgecloud_servicekit import migrations
from edgecloud_servicekit.leases import Lease
from tests.support.databases import migrated_sessions, session_factory
from tests.support.stack import create_pg_database, drop_pg_database

PACKAGE = "edgecloud_migration_scheduler"


@pytest.fixture(params=["sqlite", "postgresql"])
async def sessions(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    if request.param == "sqlite":
        async with migrated_sessions(tmp_path, PACKAGE) as factory:
            yield factory
        return
    name = await asyncio.to_thread(create_pg_database)
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    try:
        await asyncio.to_thread(migrations.upgrade, package=PACKAGE, database_url=url)
        async with session_factory(url) as factory:
            yield factory
    finally:
        await asyncio.to_thread(drop_pg_database, name)


def replicas(sessions: async_sessionmaker[AsyncSession], count: int, ttl_s: float) -> list[Lease]:
    return [
        Lease(sessions=sessions, model=SchedulerLease, name="job", ttl_s=ttl_s, holder=f"r{i}")
        for i in range(count)
    ]


async def test_one_replica_of_many_racing_holds_the_lease(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    leases = replicas(sessions, 6, ttl_s=30)
    for _ in range(3):  # the first round creates the row; later ones renew or are refused
        outcomes = await asyncio.gather(*(lease.hold() for lease in leases))
        assert outcomes.count(True) == 1
    holder = next(lease for lease in leases if lease.held)
    assert await holder.hold() is True


async def test_a_lapsed_lease_passes_to_another_replica_and_a_released_one_at_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first, second = replicas(sessions, 2, ttl_s=0.3)
    assert await first.hold() is True
    assert await second.hold() is False
    await asyncio.sleep(0.5)  # the first stopped renewing, as a killed replica does
    assert await second.hold() is True
    assert await first.hold() is False
    assert first.held is False
    await second.release()
    assert await first.hold() is True


async def test_a_database_that_does_not_answer_holds_nothing(tmp_path: Path) -> None:
    async with session_factory(f"sqlite+aiosqlite:///{tmp_path}/missing/none.db") as factory:
        (lease,) = replicas(factory, 1, ttl_s=30)
        assert await lease.hold() is False
