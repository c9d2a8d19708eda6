"""Received report ids, on the real (SQLite) schema its migrations make."""

from datetime import timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_orchestrator.database import OrchestratorBase, load_metadata
from edgecloud_orchestrator.reports import service
from edgecloud_orchestrator.reports.models import ReceivedReport
from edgecloud_servicekit.db import create_engine, transaction, utcnow


async def test_the_migrations_make_the_models_tables(database_url: str) -> None:
    # Every service's models share one MetaData (they may share a database): compare this
    # service's own tables only, whatever other services' tests imported before.
    load_metadata()
    own = MetaData()
    for mapper in OrchestratorBase.registry.mappers:
        if issubclass(mapper.class_, OrchestratorBase):
            mapper.local_table.to_metadata(own)

    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        found: list[Any] = compare_metadata(context, own)
        return [
            d for d in found if not (d[0] == "remove_table" and d[1].name.startswith("alembic"))
        ]

    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()


async def test_a_report_id_is_received_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with transaction(sessions) as session:
        assert await service.first_receipt(session=session, report_id="r-1", device_key="node_a")
    async with transaction(sessions) as session:
        assert not await service.first_receipt(
            session=session, report_id="r-1", device_key="node_a"
        )


async def test_a_receipt_rolled_back_is_not_kept(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async def receive_then_fail() -> None:
        async with transaction(sessions) as session:
            assert await service.first_receipt(
                session=session, report_id="r-2", device_key="node_a"
            )
            raise RuntimeError("applying the report failed")

    with pytest.raises(RuntimeError):
        await receive_then_fail()
    async with transaction(sessions) as session:
        assert await service.first_receipt(session=session, report_id="r-2", device_key="node_a")


async def test_old_receipts_are_pruned(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with transaction(sessions) as session:
        for report_id in ("old", "new"):
            await service.first_receipt(session=session, report_id=report_id, device_key="n")
        await session.execute(
            update(ReceivedReport)
            .where(ReceivedReport.id == "old")
            .values(at=utcnow() - service.KEEP - timedelta(minutes=1))
        )
    async with transaction(sessions) as session:
        await service.prune(session=session)
    async with sessions() as session:
        assert await session.get(ReceivedReport, "old") is None
        assert await session.get(ReceivedReport, "new") is not None
