"""FastAPI dependencies of the registry's internal REST API."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_servicekit.identity import CallerDep, Identity
from edgecloud_servicekit.problems import Forbidden
from edgecloud_servicekit.wamp import WampLink

from .alerts.events import AlertAnnouncer


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session, session.begin():
        yield session


async def _operator(caller: CallerDep) -> Identity:
    if not caller.is_operator:
        raise Forbidden("only operators may do this", code="operator_only")
    return caller


async def _wamp(request: Request) -> WampLink:
    link: WampLink = request.app.state.wamp
    return link


async def _alert_announcer(request: Request) -> AlertAnnouncer:
    announcer: AlertAnnouncer = request.app.state.alert_announcer
    return announcer


# Commit before the response is sent: a client that got 200 can rely on the change.
SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
OperatorDep = Annotated[Identity, Depends(_operator)]
WampDep = Annotated[WampLink, Depends(_wamp)]
AlertAnnouncerDep = Annotated[AlertAnnouncer, Depends(_alert_announcer)]
__all__ = ["AlertAnnouncerDep", "CallerDep", "OperatorDep", "SessionDep", "WampDep"]
