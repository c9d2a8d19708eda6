"""The request id of one user action, through every hop a service has: taken from (or made
for) an HTTP request and sent back, on every log line written meanwhile, passed on to other
services as a header and to WAMP procedures as a reserved keyword, and taken out of the
arguments again by the procedure's wrapper before its handler runs."""

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aiohttp import web
from autobahn.wamp.exception import ApplicationError
from fastapi import FastAPI
from prometheus_client import REGISTRY

from edgecloud_contracts.correlation import (
    REQUEST_ID_KWARG,
    RequestIdFilter,
    bound_request_id,
    current_request_id,
    is_valid_request_id,
    with_request_id,
)
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.internal_http import ServiceClient
from edgecloud_servicekit.logging import JsonFormatter
from edgecloud_servicekit.observability import install_observability
from edgecloud_servicekit.tracing import traced_handler
from tests.support.local_http import serving

SECRET = "a-test-secret-of-at-least-32-bytes"
CALLER = Identity(user_id="u-1", username="alice", tenant_id="t-1")


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the root logger writes, as a service configured for JSON logs writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def lines(stream: io.StringIO, *loggers: str) -> list[dict[str, Any]]:
    """The JSON lines written by ``loggers`` (other libraries log requests too)."""
    parsed = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in parsed if line["logger"] in loggers]


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("3f2a9c0e8b7d4c1a9e6f5b4a3c2d1e0f", True),
        ("checkout-42.retry_1:a", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("", False),
        ("-leading-dash", False),
        ("two words", False),
        ("line\nbreak", False),
        ('quote"inside', False),
        ("ünïcode", False),
        (42, False),
        (None, False),
    ],
)
def test_only_short_ids_of_a_safe_charset_are_taken(value: object, valid: bool) -> None:
    assert is_valid_request_id(value) is valid


def test_calls_carry_the_current_id_except_to_the_routers_own_procedures() -> None:
    kwargs = {"tail": 10}
    assert with_request_id("edge.device.k.container.logs", kwargs) is kwargs  # none current
    with bound_request_id("req-1"):
        assert with_request_id("edge.device.k.container.logs", kwargs) == {
            "tail": 10,
            REQUEST_ID_KWARG: "req-1",
        }
        assert with_request_id("wamp.registration.match", kwargs) == {"tail": 10}
    assert kwargs == {"tail": 10}
    assert current_request_id() is None


def echo_app() -> FastAPI:
    app = FastAPI()
    install_observability(app, service="test-service")
    log = logging.getLogger("tests.echo")

    @app.post("/things")
    async def make_thing() -> dict[str, str | None]:
        log.info("making a thing")
        return {"seen": current_request_id()}

    return app


@asynccontextmanager
async def calling(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        yield client


async def test_a_callers_id_is_adopted_logged_and_sent_back(json_lines: io.StringIO) -> None:
    async with calling(echo_app()) as client:
        answer = await client.post("/things", headers={"X-Request-ID": "user-action-7"})
    assert answer.status_code == 200
    assert answer.headers["X-Request-ID"] == "user-action-7"
    assert answer.json() == {"seen": "user-action-7"}
    logged = lines(json_lines, "tests.echo", "edgecloud_servicekit.observability")
    # The handler's own line, and the request's line the service writes after it.
    assert logged[0]["msg"] == "making a thing"
    assert logged[-1]["msg"].startswith("POST /things 200 in ")
    assert logged[-1]["route"] == "/things"
    assert {line["correlation_id"] for line in logged} == {"user-action-7"}


@pytest.mark.parametrize("offered", [None, "x" * 65, "<script>", "a b"])
async def test_a_missing_or_unsafe_id_is_replaced_by_a_new_one(offered: str | None) -> None:
    headers = {"X-Request-ID": offered} if offered is not None else {}
    async with calling(echo_app()) as client:
        first = await client.post("/things", headers=headers)
        second = await client.post("/things", headers=headers)
    made = first.headers["X-Request-ID"]
    assert is_valid_request_id(made)
    assert made != offered
    assert first.json() == {"seen": made}
    assert second.headers["X-Request-ID"] != made  # one per request


class Recorder:
    def __init__(self) -> None:
        self.request_ids: list[str | None] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.request_ids.append(request.headers.get("X-Request-ID"))
        return web.json_response({})


async def test_other_services_are_sent_the_current_id() -> None:
    recorder = Recorder()
    async with serving(recorder.handle, path="/v1/thing") as url:
        client = ServiceClient(service="orchestrator", base_url=url, secret=SECRET)
        try:
            with bound_request_id("user-action-8"):
                await client.request("POST", "/v1/thing", identity=CALLER, json={})
            await client.request("GET", "/v1/thing", identity=CALLER)
        finally:
            await client.aclose()
    assert recorder.request_ids == ["user-action-8", None]


def invocations(procedure: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "edgecloud_wamp_invocation_duration_seconds_count",
        {"service": "test-service", "procedure": procedure, "outcome": outcome},
    )
    return value or 0.0


async def test_a_procedure_runs_under_its_callers_id_and_never_sees_the_keyword(
    json_lines: io.StringIO,
) -> None:
    seen: list[tuple[Any, ...]] = []

    async def report(payload: dict[str, Any], *, details: object = None) -> str:
        seen.append((payload, details, current_request_id()))
        logging.getLogger("tests.report").info("report received")
        return "ok"

    handler = traced_handler("test-service", "edge.orchestrator.report", report)
    before = invocations("edge.orchestrator.report", "ok")
    assert await handler({"a": 1}, details="d", **{REQUEST_ID_KWARG: "user-action-9"}) == "ok"
    assert await handler({"a": 2}) == "ok"
    # Not a valid id: dropped, not adopted (and still not passed to the handler).
    assert await handler({"a": 3}, **{REQUEST_ID_KWARG: "bad id"}) == "ok"
    assert seen == [
        ({"a": 1}, "d", "user-action-9"),
        ({"a": 2}, None, None),
        ({"a": 3}, None, None),
    ]
    assert current_request_id() is None
    assert invocations("edge.orchestrator.report", "ok") == before + 3
    assert [line.get("correlation_id") for line in lines(json_lines, "tests.report")] == [
        "user-action-9",
        None,
        None,
    ]


async def test_invocations_are_counted_by_outcome_and_device_procedures_by_family() -> None:
    async def refuse(*_: Any) -> None:
        raise ApplicationError("edge.error.invalid_argument", "no")

    async def crash(*_: Any) -> None:
        raise RuntimeError("bug")

    family = "edge.device.*.migration.expect"
    refused, crashed = invocations(family, "invalid_argument"), invocations(family, "runtime_error")
    with pytest.raises(ApplicationError):
        await traced_handler("test-service", "edge.device.node_0a1b.migration.expect", refuse)()
    with pytest.raises(RuntimeError):
        await traced_handler("test-service", "edge.device.node_0a1b.migration.expect", crash)()
    assert invocations(family, "invalid_argument") == refused + 1
    assert invocations(family, "runtime_error") == crashed + 1
