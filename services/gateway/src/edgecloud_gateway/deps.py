"""FastAPI dependencies of the public API: the database session, who is calling, clients."""

import hmac
from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Path, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from edgecloud_contracts.text import OBJECT_ID
from edgecloud_servicekit.db import transaction
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.internal_http import ServiceClient
from edgecloud_servicekit.problems import Forbidden, Unauthenticated

from .accounts.exceptions import CsrfRejected
from .audit.trail import AuditDep
from .tenants.ratelimit import RateLimiter
from .tenants.service import require_admin
from .tokens import service as tokens_service

SESSION_COOKIE = "edgecloud_session"
CSRF_COOKIE = "edgecloud_csrf"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def _session(request: Request, _: AuditDep) -> AsyncIterator[AsyncSession]:
    # Depending on the audit trail makes it wrap the transaction: a failure is recorded
    # after the request's own transaction has rolled back (SQLite has a single writer).
    async with request.app.state.sessions() as session, session.begin():
        yield session


# Commit before the response is sent: a client that got 200 can rely on the change.
SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]


async def _caller(request: Request) -> tokens_service.Caller:
    """A bearer token, or the dashboard's session cookie plus its CSRF header; then the
    tenant's API rate quota.

    The token is looked up in a transaction of its own, not the request's: most routes
    then wait on another service (a node that may take seconds to answer), and a pooled
    connection held meanwhile would let a few slow devices starve every other request.
    """
    authorization = request.headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials:
        caller = await _resolve(request, credentials.strip())
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise Unauthenticated("sign in, or send Authorization: Bearer <token>")
        if request.method not in _SAFE_METHODS:
            expected = tokens_service.csrf_token_for(
                cookie, secret=request.app.state.settings.secret
            )
            # Compared in constant time, as bytes: Starlette reads headers as latin-1, and
            # compare_digest refuses str holding anything beyond ASCII (a 500, not a 403).
            sent = request.headers.get(CSRF_HEADER, "").encode("latin-1")
            if not hmac.compare_digest(sent, expected.encode()):
                raise CsrfRejected()
        caller = await _resolve(request, cookie)
    return _counted(request, caller)


async def websocket_caller(connection: HTTPConnection) -> tokens_service.Caller:
    """The caller of a WebSocket: a bearer token, or the dashboard's session cookie from a
    page of this very site (a browser sends the cookie with any site's WebSocket, and the
    CSRF header cannot be set on one, so the Origin is what tells them apart)."""
    authorization = connection.headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials:
        return _counted(connection, await _resolve(connection, credentials.strip()))
    cookie = connection.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise Unauthenticated("sign in, or send Authorization: Bearer <token>")
    origin = urlsplit(connection.headers.get("Origin", "")).netloc
    if not origin or origin != connection.headers.get("Host"):
        raise Forbidden("a WebSocket from another site", code="origin_rejected")
    return _counted(connection, await _resolve(connection, cookie))


def _counted(connection: HTTPConnection, caller: tokens_service.Caller) -> tokens_service.Caller:
    limiter: RateLimiter = connection.app.state.rate_limiter
    limiter.count(tenant_id=caller.identity.tenant_id, limit=caller.api_per_minute)
    return caller


async def _resolve(connection: HTTPConnection, token: str) -> tokens_service.Caller:
    async with transaction(connection.app.state.sessions) as session:
        return await tokens_service.resolve_token(session=session, token=token)


CallerDep = Annotated[tokens_service.Caller, Depends(_caller)]


# Dependencies are coroutines even when they do not await: FastAPI runs plain functions in
# its thread pool, a hop that costs more than the function.
async def _identity(caller: CallerDep) -> Identity:
    return caller.identity


async def _operator(caller: CallerDep) -> Identity:
    if not caller.identity.is_operator:
        raise Forbidden("only operators may do this", code="operator_only")
    return caller.identity


async def _tenant_admin(caller: CallerDep) -> Identity:
    require_admin(caller.identity)
    return caller.identity


async def _registry(request: Request) -> ServiceClient:
    client: ServiceClient = request.app.state.registry
    return client


async def _orchestrator(request: Request) -> ServiceClient:
    client: ServiceClient = request.app.state.orchestrator
    return client


async def _storage(request: Request) -> ServiceClient:
    client: ServiceClient = request.app.state.storage
    return client


async def _scheduler(request: Request) -> ServiceClient:
    client: ServiceClient = request.app.state.scheduler
    return client


# Ids in paths: anything else cannot name an object, and is refused before any query.
PathId = Annotated[str, Path(min_length=1, max_length=64, pattern=OBJECT_ID)]
IdentityDep = Annotated[Identity, Depends(_identity)]
OperatorDep = Annotated[Identity, Depends(_operator)]
TenantAdminDep = Annotated[Identity, Depends(_tenant_admin)]
RegistryDep = Annotated[ServiceClient, Depends(_registry)]
OrchestratorDep = Annotated[ServiceClient, Depends(_orchestrator)]
StorageDep = Annotated[ServiceClient, Depends(_storage)]
SchedulerDep = Annotated[ServiceClient, Depends(_scheduler)]
