"""Fixtures that start the real stack: Crossbar, the five services, agents.

The stack is started once per database backend; every test that uses it runs against
SQLite and against PostgreSQL.
"""

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.agents import AgentFactory
from tests.support.brokers import NodeBroker
from tests.support.stack import Stack
from tests.support.users import operator_headers

ONE_DATABASE = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
"""For a whole-stack test whose subject is not the database: run on SQLite only, to keep the
suite's time (what the cloud records, and races, run on both)."""


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp(f"stack-{request.param}")
    started = Stack(backend=request.param, workdir=workdir)
    with started.running():
        yield started


@pytest.fixture(scope="session")
def node_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeBroker]:
    """The node broker of the agents that run on this machine (as broker-setup makes it)."""
    broker = NodeBroker(tmp_path_factory.mktemp("node-broker")).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def agents(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory, node_broker: NodeBroker
) -> Iterator[AgentFactory]:
    factory = AgentFactory(stack, tmp_path_factory.mktemp("agents"), node_broker)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """The public API, signed in as the bootstrap operator."""
    headers = await operator_headers(stack)
    async with httpx.AsyncClient(base_url=stack.url("gateway"), headers=headers, timeout=10) as api:
        yield api


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """The public API, signed in as nobody."""
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as anonymous:
        yield anonymous


@pytest.fixture
def enrol(api: httpx.AsyncClient) -> Callable[[], Any]:
    """Create a one-time enrolment token as the operator."""

    async def create() -> str:
        response = await api.post("/api/v1/devices/enrolments", json={"note": "test"})
        assert response.status_code == 201, response.text
        return str(response.json()["token"])

    return create


async def eventually(probe: Callable[[], Any], *, timeout: float, interval: float = 0.05) -> Any:
    """Await ``probe()`` until it returns something truthy; return that."""
    import asyncio

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")
