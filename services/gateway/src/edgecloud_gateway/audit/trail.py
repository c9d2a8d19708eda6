"""Auditing a request: a route names its action; the outcome is recorded for it.

A success is written in the request's own transaction, so the action and its audit entry
commit together. A failure is written in a transaction of its own, because the request's
is rolled back.
"""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_servicekit.db import transaction
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.problems import Problem

from . import service
from .service import FAILURE, SUCCESS, Entry


class AuditTrail:
    def __init__(self, request: Request) -> None:
        self._request = request
        self.entry: Entry | None = None

    def begin(self, action: str, *, target: str = "", caller: Identity | None = None) -> Entry:
        """Name the action this request performs; returns the entry to fill in further."""
        client = self._request.client
        self.entry = Entry(action=action, target=target, address=client.host if client else "")
        if caller is not None:
            self.entry.tenant_id = caller.tenant_id
            self.entry.actor_id = caller.user_id
            self.entry.actor_name = caller.username
        return self.entry

    def note(self, **detail: Any) -> None:
        if self.entry is not None:
            self.entry.detail.update(detail)


async def _trail(request: Request) -> AsyncIterator[AuditTrail]:
    trail = AuditTrail(request)
    try:
        yield trail
    except Exception as err:
        if trail.entry is not None:
            trail.entry.detail["code"] = err.code if isinstance(err, Problem) else "internal_error"
            async with transaction(request.app.state.sessions) as session:
                service.record(session, trail.entry, outcome=FAILURE)
        raise


def record_success(session: AsyncSession, trail: AuditTrail) -> None:
    if trail.entry is not None:
        service.record(session, trail.entry, outcome=SUCCESS)


AuditDep = Annotated[AuditTrail, Depends(_trail, scope="function")]
