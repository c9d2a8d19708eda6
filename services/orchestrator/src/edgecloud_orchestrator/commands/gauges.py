"""The command outbox on /metrics: how many commands are queued and how many sent (waiting
for the node's answer). Read when /metrics is scraped (servicekit ScrapeHooks)."""

from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import service

COMMAND_OUTBOX = Gauge(
    "edgecloud_command_outbox",
    "Commands in the outbox not finished yet, by state (the whole outbox, as the database "
    "has it: every replica reports the same)",
    ["service", "state"],
)


class OutboxGauge:
    """One grouped count; run at most every few seconds however often /metrics is read."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def __call__(self) -> None:
        async with self._sessions() as session:
            counts = await service.pending_counts(session=session)
        for state, count in counts.items():
            COMMAND_OUTBOX.labels("orchestrator", state).set(count)
