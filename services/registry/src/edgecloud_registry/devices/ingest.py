"""Heartbeat ingestion with group commit.

Each heartbeat RPC puts its beat on a queue and waits; one writer task takes whatever
has queued up (up to a batch limit), writes it in one transaction and then answers
every waiting call. Under load the batches grow by themselves, so the database sees
a few large transactions instead of thousands of small ones, and a call returns only
once its heartbeat is committed.
"""

import asyncio
import logging
import time
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.heartbeat import Heartbeat, HeartbeatAck
from edgecloud_servicekit.db import transaction, utcnow

from . import service
from .events import DeviceEventPublisher
from .exceptions import IngestOverloaded

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    received: service.ReceivedBeat
    answer: asyncio.Future[HeartbeatAck] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class HeartbeatIngest:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        events: DeviceEventPublisher,
        missed_heartbeats: int,
        batch_max: int,
        queue_max: int,
        metrics_sample_interval_s: float,
    ) -> None:
        self._sessions = sessions
        self._events = events
        self._missed = missed_heartbeats
        self._batch_max = batch_max
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=queue_max)
        self._sample_interval = metrics_sample_interval_s
        self._last_sample: dict[str, float] = {}
        self.batches_written = 0
        self.beats_written = 0

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def submit(self, beat: Heartbeat, *, session_id: int | None) -> HeartbeatAck:
        pending = _Pending(service.ReceivedBeat(beat, session_id, utcnow()))
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull as err:
            raise IngestOverloaded("heartbeat backlog is full, retry later") from err
        return await pending.answer

    async def run(self) -> None:
        """The writer loop; runs for the life of the service."""
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)

    def _due_for_sample(self, batch: list[_Pending]) -> set[str]:
        now = time.monotonic()
        due = set()
        for pending in batch:
            key = pending.received.beat.device.key
            if now - self._last_sample.get(key, float("-inf")) >= self._sample_interval:
                due.add(key)
        return due

    async def _write(self, batch: list[_Pending]) -> None:
        sample = self._due_for_sample(batch)
        try:
            async with transaction(self._sessions) as session:
                changes = await service.record_heartbeats(
                    session=session,
                    received=[p.received for p in batch],
                    missed_heartbeats=self._missed,
                    sample_metrics_for=sample,
                )
        except Exception as err:  # the database failed: every caller hears about it
            logger.error("writing %d heartbeats failed: %s", len(batch), err)
            for pending in batch:
                if not pending.answer.done():
                    pending.answer.set_exception(err)
            return
        now = time.monotonic()
        for key in sample:
            self._last_sample[key] = now
        self.batches_written += 1
        self.beats_written += len(batch)
        for pending in batch:
            if not pending.answer.done():
                beat = pending.received.beat
                pending.answer.set_result(
                    HeartbeatAck(status=service.status_for(beat.link), interval_s=beat.interval_s)
                )
        await self._events.publish(changes)
