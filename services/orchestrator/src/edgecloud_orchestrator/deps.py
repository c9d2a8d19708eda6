"""FastAPI dependencies of the orchestrator's internal REST API."""

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_servicekit.identity import CallerDep
from edgecloud_servicekit.internal_http import ServiceClient

from .commands.dispatch import Dispatcher
from .events import EventPublisher


async def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessions
    return factory


async def _registry(request: Request) -> ServiceClient:
    client: ServiceClient = request.app.state.registry
    return client


async def _dispatcher(request: Request) -> Dispatcher:
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


async def _storage(request: Request) -> ServiceClient:
    client: ServiceClient = request.app.state.storage
    return client


async def _events(request: Request) -> EventPublisher:
    events: EventPublisher = request.app.state.events
    return events


# Writes commit in explicit transactions: a command must be stored before it is sent.
SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(_sessions)]
RegistryDep = Annotated[ServiceClient, Depends(_registry)]
DispatcherDep = Annotated[Dispatcher, Depends(_dispatcher)]
EventsDep = Annotated[EventPublisher, Depends(_events)]
StorageDep = Annotated[ServiceClient, Depends(_storage)]
__all__ = ["CallerDep", "DispatcherDep", "EventsDep", "RegistryDep", "SessionsDep", "StorageDep"]
