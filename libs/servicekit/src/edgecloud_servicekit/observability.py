"""``GET /healthz`` and ``GET /metrics`` for every service, request ids, and request timing."""

import asyncio
import hmac
import logging
import time
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .db import ping
from .metrics import HTTP_REQUEST_SECONDS, UP, ScrapeHooks
from .problems import NotFound, Unauthenticated, problem_response
from .settings import ServiceSettings
from .tracing import RequestIdMiddleware

logger = logging.getLogger(__name__)

# Reads are polled all the time (dashboards, CLIs): their lines only at DEBUG.
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


class RequestTimer:
    """ASGI middleware timing each request by its route template (not its raw path,
    which would give every device key its own time series), and logging it: a change at
    INFO, a read at DEBUG (uvicorn's own access log is off)."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = str(getattr(route, "path", "unmatched"))
            method = scope["method"]
            HTTP_REQUEST_SECONDS.labels(self.service, method, template, str(status)).observe(
                elapsed
            )
            logger.log(
                logging.DEBUG if method in _READS else logging.INFO,
                "%s %s %d in %.1f ms",
                method,
                scope["path"],
                status,
                elapsed * 1000,
                extra={"method": method, "route": template, "status": status},
            )


def install_observability(app: FastAPI, *, service: str) -> None:
    app.add_middleware(RequestTimer, service=service)
    # Added last, so outermost: everything below it, the timer's log line too, has the id.
    app.add_middleware(RequestIdMiddleware)
    app.state.scrape_hooks = ScrapeHooks()
    app.include_router(_health_router(service))


def scrape_hooks(app: FastAPI) -> ScrapeHooks:
    """Where a service's lifespan adds the gauges /metrics refreshes before answering."""
    hooks: ScrapeHooks = app.state.scrape_hooks
    return hooks


def _check_metrics_access(request: Request) -> None:
    settings: ServiceSettings | None = getattr(request.app.state, "settings", None)
    if settings is None:  # an app of the tests', built without settings
        return
    if settings.metrics_token is None:
        if settings.metrics_need_token:
            raise NotFound(
                "/metrics is served here only with a metrics token, and none is set",
                code="metrics_not_served",
            )
        return
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    expected = settings.metrics_token.get_secret_value().encode()
    given = sent.strip().encode("latin-1") if scheme.lower() == "bearer" else b""
    if not hmac.compare_digest(given, expected):
        raise Unauthenticated(
            "send Authorization: Bearer <metrics token>", code="metrics_token_required"
        )


def _health_router(service: str) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/livez", summary="Alive: the process answers (for restarts, not traffic)")
    async def livez() -> Response:
        # Nothing but the event loop: a database or router outage is no reason to restart
        # every replica (that is what /healthz and readiness are for).
        return JSONResponse({"status": "ok", "service": service})

    @router.get("/healthz", summary="Ready when the database and the WAMP session are up")
    async def healthz(request: Request) -> Response:
        checks: dict[str, str] = {}
        state = request.app.state
        try:
            await asyncio.wait_for(ping(state.engine), timeout=2)
            checks["database"] = "ok"
        except Exception as err:  # any failure means "not healthy", reported below
            checks["database"] = f"down: {type(err).__name__}: {err}"[:200]
        wamp = state.wamp
        checks["wamp"] = "ok" if wamp.connected else f"down: {wamp.failure or 'not joined'}"
        for dependency, result in checks.items():
            UP.labels(service, dependency).set(1 if result == "ok" else 0)
        if all(result == "ok" for result in checks.values()):
            return JSONResponse({"status": "ok", "service": service, "checks": checks})
        failing = ", ".join(f"{name} {result}" for name, result in checks.items() if result != "ok")
        body: dict[str, Any] = {
            "type": "https://edgecloud.dev/problems/unhealthy",
            "title": "Service unhealthy",
            "status": 503,
            "detail": failing,
            "code": "unhealthy",
            "service": service,
            "checks": checks,
        }
        return problem_response(503, body)

    @router.get("/metrics", summary="Prometheus metrics")
    async def metrics(request: Request) -> Response:
        """Prometheus text; with the service's metrics token where it has one (the gateway
        serves it only so: its port is public)."""
        _check_metrics_access(request)
        await scrape_hooks(request.app).run()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
