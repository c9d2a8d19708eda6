"""Database access shared by the services: SQLite for development, PostgreSQL otherwise."""

import asyncio
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect, Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Each service derives its own declarative base from this one."""


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    if is_sqlite(url):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers run beside the writer; foreign keys are off by default.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # No pre-ping: it costs a round trip on every checkout. A connection the server dropped
    # fails its request instead (answered 503, see problems.database_is_down), and
    # SQLAlchemy then discards every pooled connection, so the next request reconnects.
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size)


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    """Whether the database answers now. A pooled connection the server dropped earlier
    says nothing about that: its failure empties the pool, and a fresh one is asked."""
    for attempt in (1, 2):
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            return
        except DBAPIError as err:
            if attempt == 2 or not err.connection_invalidated:
                raise


@asynccontextmanager
async def transaction(
    factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session whose work is committed on success and rolled back on error."""
    async with factory() as session, session.begin():
        yield session


_process_locks: "weakref.WeakValueDictionary[str, asyncio.Lock]" = weakref.WeakValueDictionary()


@asynccontextmanager
async def exclusive_transaction(
    factory: async_sessionmaker[AsyncSession], key: str
) -> AsyncIterator[AsyncSession]:
    """A :func:`transaction` that no other one holding ``key`` runs beside, until it has
    committed: for a check-then-insert that must not race (a quota's last place).

    Within this process an asyncio lock serialises them (all SQLite needs: it runs one
    replica); on PostgreSQL an advisory lock, held until the commit, does so across
    replicas too."""
    lock = _process_locks.setdefault(key, asyncio.Lock())
    async with lock, transaction(factory) as session:
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
            )
        yield session


async def commit_without_waiting_for_disk(session: AsyncSession) -> None:
    """Let this transaction's commit return before PostgreSQL has flushed it to disk.

    Only for writes that may be lost in a server crash without harm: ones that are
    repeated or recomputed anyway (a command's delivery marks, request counts).
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SET LOCAL synchronous_commit TO OFF"))


def upsert(
    session: AsyncSession,
    table: Table,
    *,
    index_elements: Sequence[str],
    update: dict[str, Any],
) -> Insert:
    """``INSERT ... ON CONFLICT DO UPDATE`` for the session's backend.

    ``update`` maps column names to expressions; use :func:`excluded` for the new row.
    """
    statement = _dialect_insert(session, table)
    resolved = {k: v(statement.excluded) if callable(v) else v for k, v in update.items()}
    result: Insert = statement.on_conflict_do_update(index_elements=index_elements, set_=resolved)
    return result


def insert_new(session: AsyncSession, table: Table, *, index_elements: Sequence[str]) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the session's backend: a row whose key
    exists already is skipped (add ``.returning(...)`` to tell which were new)."""
    result: Insert = _dialect_insert(session, table).on_conflict_do_nothing(
        index_elements=index_elements
    )
    return result


def _dialect_insert(session: AsyncSession, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table)
