"""Running one service process: settings, logging, migrations, then uvicorn."""

from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from . import migrations
from .logging import configure_logging
from .settings import ServiceSettings
from .slow_clients import guarded_http_protocol


def serve(*, settings: ServiceSettings, package: str, create_app: Callable[..., FastAPI]) -> None:
    configure_logging(level=settings.log_level, json_lines=settings.log_json)
    if settings.database_url.startswith("sqlite"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    # Before the event loop starts: alembic's async env runs its own loop.
    migrations.upgrade(package=package, database_url=settings.database_url)
    tls = settings.server_tls()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_keep_alive=5,
        http=guarded_http_protocol(
            head_timeout_s=settings.http_head_timeout_s,
            body_stall_s=settings.http_body_stall_timeout_s,
        ),
        timeout_graceful_shutdown=5,
        limit_concurrency=settings.max_connections,
        # A WebSocket message (a shell's keystrokes, a paste) is small; refuse floods early.
        ws_max_size=1 << 20,
        ssl_certfile=tls.certfile if tls is not None else None,
        ssl_keyfile=tls.keyfile if tls is not None else None,
    )
