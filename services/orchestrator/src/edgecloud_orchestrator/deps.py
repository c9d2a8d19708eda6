"""FastAPI dependencies of the orchestrator's internal REST API."""

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_servicekit.identity import CallerDep
from edgecloud_servicekit.internal_http import ServiceClient

from .commands.dispatch import Dispatcher


def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessions
    return factory


def _registry(request: Request) -> ServiceClient:
    client: ServiceClient = request.app.state.registry
    return client


def _dispatcher(request: Request) -> Dispatcher:
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


# Writes commit in explicit transactions: a command must be stored before it is sent.
SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(_sessions)]
RegistryDep = Annotated[ServiceClient, Depends(_registry)]
DispatcherDep = Annotated[Dispatcher, Depends(_dispatcher)]
__all__ = ["CallerDep", "DispatcherDep", "RegistryDep", "SessionsDep"]
