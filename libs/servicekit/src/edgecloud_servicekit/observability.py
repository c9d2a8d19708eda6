"""``GET /healthz`` and ``GET /metrics`` for every service, plus request timing."""

import asyncio
import time
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .db import ping
from .problems import problem_response

# Metrics are process-wide; the service label tells replicas and services apart.
HTTP_REQUEST_SECONDS = Histogram(
    "edgecloud_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["service", "method", "route", "status"],
)
WAMP_CALLS = Counter(
    "edgecloud_wamp_invocations_total",
    "WAMP procedure invocations handled",
    ["service", "procedure", "outcome"],
)
UP = Gauge("edgecloud_dependency_up", "1 when a dependency answers", ["service", "dependency"])


class RequestTimer:
    """ASGI middleware timing each request by its route template (not its raw path,
    which would give every device key its own time series)."""

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
            route = scope.get("route")
            template = str(getattr(route, "path", "unmatched"))
            HTTP_REQUEST_SECONDS.labels(
                self.service, scope["method"], template, str(status)
            ).observe(time.perf_counter() - started)


def install_observability(app: FastAPI, *, service: str) -> None:
    app.add_middleware(RequestTimer, service=service)
    app.include_router(_health_router(service))


def _health_router(service: str) -> APIRouter:
    router = APIRouter(tags=["operations"])

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
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
