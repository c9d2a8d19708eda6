"""Marking devices offline: when heartbeats stop, and at once when a session leaves.

Both paths update the database with a row lock, so that each transition is recorded and
announced once; the sweep moreover runs only in the replica holding its lease (the others
idle), and a replica taking the lease over first gives every device a new window.

Silence counts only while the registry itself could have heard: a paused router or
database (or a registry just started) stops every heartbeat at once. So each round first
asks the router for a round trip; while it or the database does not answer, no device is
marked, and once both answer again every device gets its whole window afresh
(``restart_deadlines``) before anyone's silence counts again. A database that kept a
round's first statement waiting was paused: that round decides nothing either. The same
holds for a session that leaves just then (see ``on_session_leave``).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts import uris
from edgecloud_servicekit.db import transaction, utcnow
from edgecloud_servicekit.leases import Lease

from . import service
from .events import DeviceEventPublisher

logger = logging.getLogger(__name__)

STALL_S = 2.5
"""A first statement slower than this means the database was paused or cut off meanwhile
(a new connection on a busy machine takes well under a second)."""
RECOVERY_GRACE_S = 5.0
"""How long after its own outage a session's leaving is still taken for that outage's."""


async def _stalled(session: AsyncSession, *, since: float | None = None) -> bool:
    """Whether the database kept this transaction's first statement (or the work since
    ``since``) waiting: it was paused, and what it says about heartbeats is from before."""
    started = time.monotonic() if since is None else since
    await session.execute(text("SELECT 1"))
    return time.monotonic() - started > STALL_S


class Liveness:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        events: DeviceEventPublisher,
        sweep_interval_s: float,
        metrics_retention: timedelta,
        status_retention: timedelta,
        lease: Lease | None = None,
    ) -> None:
        """``lease``: given, only the replica holding it marks devices and prunes (every
        replica still watches its own view of the router and the database, for the
        sessions that leave)."""
        self._sessions = sessions
        self._events = events
        self._sweep_interval = sweep_interval_s
        self._metrics_retention = metrics_retention
        self._status_retention = status_retention
        self._healthy = False  # until a first round proves otherwise: a fresh start is
        # like the end of an outage (every registry replica may have been down)
        self._in_outage = False
        self._outage_ended_at: float | None = None
        self._led = False
        """Whether this replica marked devices in its last good round."""
        self.lease = lease
        self.router_answers: Callable[[], Awaitable[bool]] | None = None
        """Set once the service's WAMP link exists (it is made after this)."""

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            await self.sweep()

    async def sweep(self) -> None:
        """One round: mark the devices whose silence counts."""
        if self.router_answers is not None and not await self.router_answers():
            self._unhealthy("the router does not answer")
            return
        started = time.monotonic()
        leading = self.lease is None or await self.lease.hold()
        changes = []
        try:
            async with transaction(self._sessions) as session:
                if await _stalled(session, since=started):
                    raise TimeoutError("the database stalled")
                if leading and not (self._healthy and self._led):
                    # Back from an outage, or just now the sweeping replica: nobody knows
                    # whether the silence before was heard.
                    moved = await service.restart_deadlines(session=session, since=utcnow())
                    logger.info("liveness sweep (re)started: %d devices given a new window", moved)
                if leading:
                    changes = await service.mark_overdue_offline(session=session)
        except Exception as err:  # keep sweeping; log the breakage once
            self._unhealthy(f"the database failed: {err}")
            return
        self._healthy, self._led = True, leading
        if self._in_outage:
            self._in_outage, self._outage_ended_at = False, time.monotonic()
        await self._events.publish(changes)

    def _unhealthy(self, why: str) -> None:
        if self._healthy:
            logger.error("liveness sweep paused, no device marked meanwhile: %s", why)
            self._in_outage = True  # (not before the first good round: starting is none)
        self._healthy = False

    async def close(self) -> None:
        """Give the lease up, so another replica sweeps at once."""
        if self.lease is not None:
            await self.lease.release()

    async def prune_forever(self, every_s: float = 300.0) -> None:
        while True:
            if self.lease is None or self.lease.held:  # the sweeping replica prunes too
                try:
                    now = utcnow()
                    async with transaction(self._sessions) as session:
                        await service.prune_history(
                            session=session,
                            metrics_before=now - self._metrics_retention,
                            status_before=now - self._status_retention,
                        )
                except Exception as err:  # retention is best effort; retried next round
                    logger.warning("pruning history failed: %s", err)
            await asyncio.sleep(every_s)

    async def on_session_join(self, details: dict[str, Any]) -> None:
        """``wamp.session.on_join``: remember which session a known device uses."""
        if details.get("authrole") != uris.ROLE_DEVICE:
            return
        async with transaction(self._sessions) as session:
            await service.attach_session(
                session=session,
                device_key=str(details.get("authid")),
                wamp_session=int(details["session"]),
            )

    async def on_session_leave(self, session_id: int, *_: Any) -> None:
        """``wamp.session.on_leave``: a device whose session left is offline now, unless the
        registry could not hear it just before: a node gives up on a frozen router or a
        cloud that does not answer its heartbeats and connects again, and its old session's
        leaving is then news of the cloud's outage, not of the node. Such a device gets its
        whole window to come back instead."""
        async with transaction(self._sessions) as session:
            if await _stalled(session) or self._recovering():
                await service.restart_deadlines(
                    session=session, since=utcnow(), wamp_session=int(session_id)
                )
                return
            changes = await service.mark_session_closed(
                session=session, wamp_session=int(session_id)
            )
        await self._events.publish(changes)

    def _recovering(self) -> bool:
        """In an outage of its own, or out of one only since moments ago (a fresh start is
        not one: a leave the registry hears then is a node's own)."""
        ended = self._outage_ended_at
        recently = ended is not None and time.monotonic() - ended < RECOVERY_GRACE_S
        return self._in_outage or recently
