"""WAMP adapter: what nodes report between heartbeats (container changes, pull progress)."""

import logging
from typing import Any

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallDetails
from prometheus_client import Gauge
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts import errors, uris
from edgecloud_contracts.containers import NodeReport
from edgecloud_servicekit.db import transaction

from ..commands.models import CommandRow
from ..events import EventPublisher
from . import service

logger = logging.getLogger(__name__)
ORPHANS = Gauge(
    "edgecloud_orphan_containers",
    "Containers a node runs for edgecloud that the cloud has no record of",
    ["device"],
)


class NodeReports:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], events: EventPublisher
    ) -> None:
        self._sessions = sessions
        self._events = events

    async def report(self, payload: Any = None, *, details: CallDetails) -> None:
        """``edge.orchestrator.report(report)``: a node's own news, and only about itself."""
        if details.caller_authrole != uris.ROLE_DEVICE or not details.caller_authid:
            raise ApplicationError(errors.NOT_AUTHORIZED, "only devices send reports")
        try:
            report = NodeReport.model_validate(payload)
        except ValidationError as err:
            raise ApplicationError(
                errors.INVALID_ARGUMENT, "malformed report", str(err)[:500]
            ) from err
        device_key = details.caller_authid
        if report.kind == "container" and report.container is not None:
            async with transaction(self._sessions) as session:
                container = await service.apply_report(
                    session=session, device_key=device_key, report=report.container
                )
            if container is not None:
                await self._events.container(container)
        elif report.kind == "inventory" and report.inventory is not None:
            async with transaction(self._sessions) as session:
                changed, orphans = await service.reconcile(
                    session=session, device_key=device_key, inventory=report.inventory
                )
            ORPHANS.labels(device_key).set(len(orphans))
            for orphan in orphans:
                logger.warning(
                    "container %s on %s was made by edgecloud but is unknown to the cloud",
                    orphan.docker_name,
                    device_key,
                    extra={"device": device_key},
                )
            for container in changed:
                await self._events.container(container)
        elif report.kind == "pull" and report.pull is not None:
            async with self._sessions() as session:
                command = await session.scalar(
                    select(CommandRow).where(
                        CommandRow.id == report.pull.command_id, CommandRow.device_key == device_key
                    )
                )
            if command is not None:
                await self._events.command(command, progress=report.pull.model_dump(mode="json"))
