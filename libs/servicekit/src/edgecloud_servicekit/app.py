"""Building blocks every service's ``create_app`` uses, so that each app.py lists only
what is its own: routers, WAMP procedures and subscriptions, background tasks."""

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .body_limit import BodyLimit, body_within_limit
from .db import create_engine, create_session_factory
from .observability import install_observability
from .problems import install_problem_handlers
from .settings import ServiceSettings
from .wamp import Procedure, Subscription, WampLink


def open_database(
    stack: AsyncExitStack, settings: ServiceSettings
) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
    stack.push_async_callback(engine.dispose)
    return engine, create_session_factory(engine)


def wamp_link(
    settings: ServiceSettings,
    *,
    procedures: Sequence[Procedure] = (),
    subscriptions: Sequence[Subscription] = (),
) -> WampLink:
    return WampLink(
        url=settings.router_url,
        realm=settings.realm,
        authid=settings.service_name,
        ticket=settings.ticket,
        call_timeout=settings.wamp_call_timeout_s,
        ca_file=settings.ca_file,
        procedures=procedures,
        subscriptions=subscriptions,
    )


def create_service_app(
    *,
    settings: ServiceSettings,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    routers: Sequence[APIRouter] = (),
    description: str = "",
) -> FastAPI:
    # The stock /docs and /redoc pages load their scripts from a CDN; the gateway serves
    # its own from vendored assets, the internal services need none.
    app = FastAPI(
        title=f"edgecloud {settings.service_name}",
        version="0.1.0",
        description=description,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(body_within_limit)],
    )
    app.state.settings = settings
    install_problem_handlers(app)
    # Inside the observability middleware: a refused body is timed and logged too.
    app.add_middleware(BodyLimit, default_bytes=settings.max_body_bytes)
    install_observability(app, service=settings.service_name)
    for router in routers:
        app.include_router(router)
    return app


def plain_lifespan(
    settings: ServiceSettings,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The lifespan of a service that has only its database and WAMP session so far."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            engine, sessions = open_database(stack, settings)
            wamp = await stack.enter_async_context(wamp_link(settings))
            expose(app, engine=engine, sessions=sessions, wamp=wamp)
            yield

    return lifespan


def expose(
    app: FastAPI,
    *,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    wamp: WampLink,
    **extra: Any,
) -> None:
    """Put the lifespan's clients where dependencies and /healthz find them."""
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.wamp = wamp
    for name, value in extra.items():
        setattr(app.state, name, value)
