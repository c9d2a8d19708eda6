"""WAMP adapter: what nodes report between heartbeats (container changes, pull progress,
deployment steps, collected data; a report with an id is applied once), where they
upload a finished job's logs, and the grant with which they ship a container's output as it
runs."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallDetails
from prometheus_client import Gauge
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts import errors, uris
from edgecloud_contracts.artifacts import ArtifactKind
from edgecloud_contracts.containers import NodeReport
from edgecloud_servicekit.db import transaction
from edgecloud_servicekit.internal_http import ServiceClient

from ..commands.grants import transfer_url
from ..commands.models import CommandRow
from ..copies import service as copies_service
from ..data import service as data_service
from ..deployments import service as deployments_service
from ..deployments.cleanup import acting_for
from ..events import EventPublisher
from ..reports import service as reports_service
from . import service
from .models import Container

logger = logging.getLogger(__name__)
ORPHANS = Gauge(
    "edgecloud_orphan_containers",
    "Containers a node runs for edgecloud that the cloud has no record of",
    ["device"],
)


class _AppliedAlready(Exception):
    """A report whose id was recorded: acknowledged again, not applied again."""


class NodeReports:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        events: EventPublisher,
        storage: ServiceClient,
        secret: str,
        grant_ttl_s: float,
    ) -> None:
        self._sessions = sessions
        self._events = events
        self._storage = storage
        self._secret = secret
        self._grant_ttl_s = grant_ttl_s

    async def report(self, payload: Any = None, *, details: CallDetails) -> None:
        """``edge.orchestrator.report(report)``: a node's own news, and only about itself.
        A report with an id is applied once, however often the node sends it."""
        if details.caller_authrole != uris.ROLE_DEVICE or not details.caller_authid:
            raise ApplicationError(errors.NOT_AUTHORIZED, "only devices send reports")
        try:
            report = NodeReport.model_validate(payload)
        except ValidationError as err:
            raise ApplicationError(
                errors.INVALID_ARGUMENT, "malformed report", str(err)[:500]
            ) from err
        try:
            await self._apply(report, device_key=details.caller_authid)
        except _AppliedAlready:
            logger.debug("report %s again: applied already", report.id)

    @asynccontextmanager
    async def _applying(self, report: NodeReport, device_key: str) -> AsyncIterator[AsyncSession]:
        """The transaction that applies ``report`` and records its id (both or neither);
        raises :class:`_AppliedAlready` for a report whose id is recorded."""
        async with transaction(self._sessions) as session:
            if report.id is not None and not await reports_service.first_receipt(
                session=session, report_id=report.id, device_key=device_key
            ):
                raise _AppliedAlready
            yield session

    async def _apply(self, report: NodeReport, *, device_key: str) -> None:
        if report.kind == "container" and report.container is not None:
            async with self._applying(report, device_key) as session:
                container = await service.apply_report(
                    session=session, device_key=device_key, report=report.container
                )
                if container is None:  # perhaps the end of an old copy kept there
                    await copies_service.observe(
                        session=session, device_key=device_key, report=report.container
                    )
            if container is not None:
                await self._events.container(container)
        elif report.kind == "inventory" and report.inventory is not None:
            async with self._applying(report, device_key) as session:
                changed, orphans = await service.reconcile(
                    session=session, device_key=device_key, inventory=report.inventory
                )
                kept = await copies_service.reconcile(
                    session=session, device_key=device_key, inventory=report.inventory
                )
            orphans = [orphan for orphan in orphans if orphan.container_id not in kept]
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
            # Progress only: shown if it arrives, never stored, so a repeat is harmless.
            async with self._sessions() as session:
                command = await session.scalar(
                    select(CommandRow).where(
                        CommandRow.id == report.pull.command_id, CommandRow.device_key == device_key
                    )
                )
            if command is not None:
                await self._events.command(command, progress=report.pull.model_dump(mode="json"))
        elif report.kind == "data" and report.data:
            async with self._applying(report, device_key) as session:
                await data_service.store(
                    session=session, device_key=device_key, batches=report.data
                )
        elif report.kind == "deployment" and report.deployment is not None:
            async with self._applying(report, device_key) as session:
                deployment = await deployments_service.apply_report(
                    session=session, device_key=device_key, report=report.deployment
                )
            if deployment is not None:
                await self._events.deployment(deployments_service.event(deployment))

    async def log_slot(self, container_id: Any = None, *, details: CallDetails) -> dict[str, str]:
        """``edge.orchestrator.log_slot(container_id)``: where a node uploads the logs of a
        finished job-style container of its own before removing it."""
        container, device_key = await self._placed_on_caller(container_id, details)
        if container.log_artifact_id is None:
            artifact = (
                await self._storage.request(
                    "POST",
                    "/v1/artifacts/expected",
                    identity=acting_for(container.tenant_id, container.owner),
                    json={
                        "name": f"{container.docker_name}.log",
                        "kind": ArtifactKind.LOG.value,
                        "container_id": container.id,
                        "device_key": device_key,
                    },
                )
            ).json()
            async with transaction(self._sessions) as session:
                stored = await session.get(Container, container.id)
                assert stored is not None
                stored.log_artifact_id = artifact["id"]
            container.log_artifact_id = artifact["id"]
        return {
            "artifact_id": container.log_artifact_id,
            "url": transfer_url(
                container.log_artifact_id,
                tenant_id=container.tenant_id,
                device_key=device_key,
                direction="upload",
                secret=self._secret,
                ttl_s=self._grant_ttl_s,
            ),
        }

    async def log_stream(
        self, container_id: Any = None, *, details: CallDetails
    ) -> dict[str, str | float]:
        """``edge.orchestrator.log_stream(container_id)``: the URL (with a grant for this
        container and node) where the node ships segments of a container's output as it
        runs; only the node the container is placed on gets one (also once it is removed:
        its last lines still go)."""
        container, device_key = await self._placed_on_caller(container_id, details)
        return {
            "url": transfer_url(
                container.id,
                tenant_id=container.tenant_id,
                device_key=device_key,
                direction="logs",
                secret=self._secret,
                ttl_s=self._grant_ttl_s,
            ),
            "expires_in_s": self._grant_ttl_s,
        }

    async def _placed_on_caller(
        self, container_id: Any, details: CallDetails
    ) -> tuple[Container, str]:
        """The container named by a device's call, if it is placed on that device."""
        device_key = details.caller_authid
        if details.caller_authrole != uris.ROLE_DEVICE or not device_key:
            raise ApplicationError(errors.NOT_AUTHORIZED, "only devices move logs")
        if not isinstance(container_id, str) or not 0 < len(container_id) <= 64:
            raise ApplicationError(errors.INVALID_ARGUMENT, "expected a container id")
        async with self._sessions() as session:
            container = await session.get(Container, container_id)
        # Someone else's container, or one that does not exist, looks the same.
        if container is None or container.device_key != device_key:
            raise ApplicationError(errors.NOT_FOUND, f"no container {container_id} here")
        return container, device_key
