"""FastAPI dependencies of the migration-scheduler's internal REST API."""

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_servicekit.identity import CallerDep


async def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessions
    return factory


SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(_sessions)]
__all__ = ["CallerDep", "SessionsDep"]
