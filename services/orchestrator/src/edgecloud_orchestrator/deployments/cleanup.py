"""What a failed or expired command leaves behind, put right: its deployment ends as
failed, and the artifact a files command was to fill is removed again."""

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.containers import Action, Command
from edgecloud_servicekit.db import transaction
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.internal_http import ServiceClient
from edgecloud_servicekit.problems import RemoteProblem

from ..commands.models import CommandRow
from ..events import EventPublisher
from . import service

logger = logging.getLogger(__name__)


def acting_for(tenant_id: str, username: str = "orchestrator") -> Identity:
    """The identity the orchestrator signs when it asks the storage on a tenant's behalf
    without a user request in hand (cleanup, a node's log upload)."""
    return Identity(
        user_id=f"service:{username}",
        username=username,
        tenant_id=tenant_id,
        roles=frozenset({"member"}),
    )


class AfterFailure:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        events: EventPublisher,
        storage: ServiceClient,
    ) -> None:
        self._sessions = sessions
        self._events = events
        self._storage = storage

    async def __call__(self, row: CommandRow) -> None:
        if row.action == Action.DEPLOY:
            async with transaction(self._sessions) as session:
                deployment = await service.fail_for_command(
                    session=session,
                    command_id=row.id,
                    error_code=row.error_code or "command_failed",
                    error=row.error or f"the deploy command {row.state}",
                )
            if deployment is not None:
                await self._events.deployment(service.event(deployment))
        elif row.action == Action.FILES:
            order = Command.model_validate(row.payload).files
            if order is None:
                return
            try:
                await self._storage.request(
                    "DELETE",
                    f"/v1/artifacts/{order.artifact_id}",
                    identity=acting_for(row.tenant_id),
                )
            except RemoteProblem as err:
                if err.status != 404:
                    raise
