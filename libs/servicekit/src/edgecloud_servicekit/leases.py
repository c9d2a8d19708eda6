"""Leases: a job that must run in one replica at a time (deciding migrations) is done only
by the replica holding its lease, a row in the service's own database.

A row rather than a PostgreSQL advisory lock: it works on SQLite too, survives a dropped
connection without handing the job over at once, and says in the table who holds it. The
holder renews it each round; a replica that dies (kill -9) simply stops renewing, and
another takes it over once ``ttl_s`` has passed. Replicas' clocks must agree to well
under ``ttl_s`` (NTP does that).
"""

import logging
import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import String, delete, or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from .db import UTCDateTime, insert_new, transaction, utcnow

logger = logging.getLogger(__name__)


class LeaseColumns:
    """The columns of a service's leases table: mix into a model of its own base, with a
    table name of its own (services may share one database)."""

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(120))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True))


def replica_name() -> str:
    """Who this process is, for the lease table: host, pid and a random part (a restarted
    process with a reused pid is someone else)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:120]


class Lease:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        model: type[LeaseColumns],
        name: str,
        ttl_s: float,
        holder: str | None = None,
    ) -> None:
        self._sessions = sessions
        self._model = model
        self.name = name
        self.holder = holder or replica_name()
        self._ttl = timedelta(seconds=ttl_s)
        self.held = False

    async def hold(self) -> bool:
        """Take the lease if it is free or expired, or renew it if ours; whether we hold it
        now. A database that does not answer means we do not (another replica may)."""
        model = self._model
        now = utcnow()
        try:
            async with transaction(self._sessions) as session:
                taken = await session.execute(
                    update(model)
                    .where(
                        model.name == self.name,
                        or_(model.holder == self.holder, model.expires_at < now),
                    )
                    .values(holder=self.holder, expires_at=now + self._ttl)
                )
                if getattr(taken, "rowcount", 0) == 1:
                    return self._now_held(True)
                # The first round of all: make the row (only one replica's insert counts).
                table = model.__table__  # type: ignore[attr-defined]
                created = await session.execute(
                    insert_new(session, table, index_elements=["name"]).values(
                        name=self.name, holder=self.holder, expires_at=now + self._ttl
                    )
                )
                return self._now_held(getattr(created, "rowcount", 0) == 1)
        except Exception as err:  # the database is down: hold nothing until it is back
            logger.warning("lease %s not renewed: %s", self.name, err)
            return self._now_held(False)

    async def release(self) -> None:
        """Give the lease up (on shutdown), so another replica takes over at once."""
        if not self.held:
            return
        model = self._model
        try:
            async with transaction(self._sessions) as session:
                await session.execute(
                    delete(model).where(model.name == self.name, model.holder == self.holder)
                )
        except Exception as err:  # it will expire by itself
            logger.warning("lease %s not released: %s", self.name, err)
        self.held = False

    def _now_held(self, held: bool) -> bool:
        if held != self.held:
            logger.info("%s the lease %s as %s", "took" if held else "lost", self.name, self.holder)
        self.held = held
        return held
