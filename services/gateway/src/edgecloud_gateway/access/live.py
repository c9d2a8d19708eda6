"""Long-lived connections (event streams, followed logs, shells): their fair shares of the
gateway, and their end when the access they were opened with is taken away.

A request is authorised once, when it arrives; a connection that stays open for hours
must keep being authorised. Each one holds a :class:`Lease` naming the token it was opened
with (and the device it reaches, if any), and :meth:`LiveConnections.run` re-reads every
held token from the database twice a second, in one query: a token revoked (signed out,
revoked by name, minted by a revoked token), expired, of a user disabled or removed from
the tenant, or whose role changed, ends the connections it holds. Reading the shared
database, rather than waiting for a message, is what makes this hold on every replica
whatever path took the access away (a route, the CLI, another replica, an operator's SQL).
A withdrawn device grant arrives as the registry's grant event and ends the tenant's
connections to that device at once; the device grants of open connections are also read
again every half-minute in case an event was lost.

Shares: each user and each tenant may hold a limited number of each kind at once on a
replica (429 ``too_many_streams``, ``too_many_follows`` or ``too_many_shells``, with
``Retry-After``), and all long-lived connections
together stay within a budget below the process's connection limit (503
``live_connections_full``), so short requests always find room.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.events import DeviceGrantChanged
from edgecloud_servicekit.db import transaction
from edgecloud_servicekit.internal_http import ServiceClient
from edgecloud_servicekit.problems import NotFound, Problem, TooManyRequests, Unavailable

from ..tokens import service as tokens_service
from ..tokens.service import Caller

logger = logging.getLogger(__name__)

EVENTS, LOG_FOLLOW, SHELL = "events", "log_follow", "shell"
REFUSAL_CODES = {
    EVENTS: "too_many_streams",
    LOG_FOLLOW: "too_many_follows",
    SHELL: "too_many_shells",
}

# Why a connection ended, as its client is told.
ACCESS_REVOKED = "access_revoked"
ROLE_CHANGED = "role_changed"
GRANT_WITHDRAWN = "grant_withdrawn"


@dataclass(frozen=True, slots=True)
class Shares:
    """How many connections of each kind one user, and one tenant, may hold on a replica."""

    per_user: dict[str, int]
    per_tenant: dict[str, int]
    budget: int
    """All long-lived connections of every tenant together."""
    retry_after_s: int = 30


@dataclass(eq=False)
class Lease:
    kind: str
    caller: Caller
    device: str | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""
    _on_end: list[Callable[[str], None]] = field(default_factory=list)

    @property
    def tenant_id(self) -> str:
        return self.caller.identity.tenant_id

    @property
    def user_id(self) -> str:
        return self.caller.identity.user_id

    def on_end(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(reason)`` when the lease is ended (at once if it already is)."""
        if self.ended.is_set():
            callback(self.reason)
        else:
            self._on_end.append(callback)

    def end(self, reason: str) -> None:
        if self.ended.is_set():
            return
        self.reason = reason
        self.ended.set()
        for callback in self._on_end:
            callback(reason)


class LiveConnections:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: ServiceClient,
        shares: Shares,
        *,
        recheck_s: float = 0.5,
        grant_recheck_s: float = 30.0,
    ) -> None:
        self._sessions = sessions
        self._registry = registry
        self._shares = shares
        self._recheck_s = recheck_s
        self._grant_recheck_s = grant_recheck_s
        self._leases: set[Lease] = set()

    def admit(self, kind: str, caller: Caller, *, device: str | None = None) -> Lease:
        """Count a new connection in, or refuse it; :meth:`release` it when it closes."""
        shares = self._shares
        if len(self._leases) >= shares.budget:
            raise Unavailable(
                "the gateway holds as many long-lived connections as it may; retry later",
                code="live_connections_full",
                headers={"Retry-After": str(shares.retry_after_s)},
                retry_after=shares.retry_after_s,
            )
        identity = caller.identity
        same_kind = [lease for lease in self._leases if lease.kind == kind]
        by_user = sum(1 for lease in same_kind if lease.user_id == identity.user_id)
        by_tenant = sum(1 for lease in same_kind if lease.tenant_id == identity.tenant_id)
        for holder, held, limit in (
            ("you hold", by_user, shares.per_user[kind]),
            ("your tenant holds", by_tenant, shares.per_tenant[kind]),
        ):
            if held >= limit:
                raise TooManyRequests(
                    f"{holder} {held} open {kind.replace('_', ' ')} connections, the most "
                    f"allowed; close one first",
                    code=REFUSAL_CODES[kind],
                    retry_after=shares.retry_after_s,
                )
        lease = Lease(kind=kind, caller=caller, device=device)
        self._leases.add(lease)
        return lease

    def release(self, lease: Lease) -> None:
        self._leases.discard(lease)

    # Taking access away.

    async def run(self) -> None:
        """Re-check held tokens twice a second, and device grants every half-minute."""
        grants_checked = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(self._recheck_s)
            try:
                await self.recheck_tokens()
                now = asyncio.get_running_loop().time()
                if now - grants_checked >= self._grant_recheck_s:
                    grants_checked = now
                    await self.recheck_grants()
            except Exception as err:  # the database or registry may be restarting
                logger.warning("re-checking live connections failed: %s", err)

    async def recheck_tokens(self) -> None:
        leases = list(self._leases)
        if not leases:
            return
        async with transaction(self._sessions) as session:
            roles = await tokens_service.roles_of_valid_tokens(
                session=session, token_ids={lease.caller.token_id for lease in leases}
            )
        for lease in leases:
            role = roles.get(lease.caller.token_id)
            if role is None:
                lease.end(ACCESS_REVOKED)
            elif role not in lease.caller.identity.roles:
                lease.end(ROLE_CHANGED)

    async def recheck_grants(self) -> None:
        """Each tenant's device of an open connection, asked of the registry again."""
        pairs: dict[tuple[str, str], Lease] = {}
        for lease in self._leases:
            if lease.device is not None and not lease.caller.identity.is_operator:
                pairs.setdefault((lease.tenant_id, lease.device), lease)
        for (tenant_id, device), lease in pairs.items():
            try:
                await self._registry.request(
                    "GET", f"/v1/devices/{device}", identity=lease.caller.identity
                )
            except NotFound:
                self.withdraw(tenant_id=tenant_id, device=device)
            except Problem as problem:
                logger.info("device %s not re-checked: %s", device, problem)

    async def on_device_grant(self, event: object) -> None:
        try:
            change = DeviceGrantChanged.model_validate(event)
        except ValueError:
            return  # the event hub logs malformed grant events
        if not change.granted:
            self.withdraw(tenant_id=change.tenant, device=change.key)

    def withdraw(self, *, tenant_id: str, device: str) -> None:
        for lease in list(self._leases):
            if (
                lease.device == device
                and lease.tenant_id == tenant_id
                and not lease.caller.identity.is_operator
            ):
                lease.end(GRANT_WITHDRAWN)


REASONS = {
    ACCESS_REVOKED: "the access this stream was opened with was taken away",
    ROLE_CHANGED: "your role in the tenant changed; open it again",
    GRANT_WITHDRAWN: "the tenant's grant on the container's device was withdrawn",
}


async def until_ended(source: AsyncIterable[Any], lease: Lease) -> AsyncIterator[Any]:
    """A followed log's server-sent events passed on until they end or the lease does;
    then an ``error`` event saying why, and the source is closed."""
    chunks = aiter(source)
    ended = asyncio.ensure_future(lease.ended.wait())
    try:
        while True:
            following = asyncio.ensure_future(anext(chunks))
            done, _ = await asyncio.wait({following, ended}, return_when=asyncio.FIRST_COMPLETED)
            if following not in done:
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await following
                reason = lease.reason
                # After a blank line: the last chunk may have stopped inside an event.
                said = f"{reason}: {REASONS.get(reason, reason)}"
                yield f"\n\nevent: error\ndata: {said}\n\n".encode()
                return
            try:
                chunk = following.result()
            except StopAsyncIteration:
                return
            yield chunk
    finally:
        ended.cancel()
        closing = getattr(chunks, "aclose", None)
        if closing is not None:
            with contextlib.suppress(Exception):
                await closing()
