"""The scheduler's WAMP procedures for agents (thin): ``edge.migration.report`` and
``edge.migration.request``."""

from typing import Any

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallDetails
from pydantic import ValidationError

from edgecloud_contracts import errors
from edgecloud_contracts.migrations import NodeMigrationRequest, StepReport
from edgecloud_servicekit.problems import Problem

from .coordinator import Coordinator, ReportRefused


class MigrationRpc:
    def __init__(self, coordinator: Coordinator) -> None:
        self._coordinator = coordinator

    async def report(self, payload: Any = None, *, details: CallDetails) -> dict[str, Any]:
        try:
            report = StepReport.model_validate(payload)
        except ValidationError as err:
            message = f"not a step report: {err}"[:1000]
            raise ApplicationError(errors.INVALID_ARGUMENT, message) from err
        try:
            taken = await self._coordinator.report(report, device=str(details.caller_authid))
        except ReportRefused as err:
            raise ApplicationError(err.uri, str(err)) from err
        return {"ok": taken}

    async def request(self, payload: Any = None, *, details: CallDetails) -> dict[str, Any]:
        """A node's monitor asks for its containers to move; answered with the migrations
        started (followed in ``edge.event.migration``)."""
        try:
            request = NodeMigrationRequest.model_validate(payload)
        except ValidationError as err:
            message = f"not a migration request: {err}"[:1000]
            raise ApplicationError(errors.INVALID_ARGUMENT, message) from err
        try:
            return await self._coordinator.node_request(request, device=str(details.caller_authid))
        except ReportRefused as err:
            raise ApplicationError(err.uri, str(err)) from err
        except Problem as err:
            raise ApplicationError(errors.UNAVAILABLE, str(err)) from err
