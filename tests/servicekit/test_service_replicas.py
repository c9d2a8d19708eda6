"""ServiceClient over several replicas of a service, served here by real HTTP servers on
loopback: requests take the replicas in turn, one that refuses connections is passed over,
and one that drops a request midway is replaced only where repeating is safe."""

import asyncio
import socket

import pytest
from aiohttp import web

from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.internal_http import ServiceClient
from edgecloud_servicekit.problems import Unavailable
from tests.support.local_http import serving

SECRET = "a-test-secret-of-at-least-32-bytes"
CALLER = Identity(user_id="u-1", username="alice", tenant_id="t-1")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Replica:
    def __init__(self, name: str, *, drops: bool = False) -> None:
        self.name = name
        self.drops = drops
        self.seen: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request.method)
        if self.drops:  # dies with the request in its hands
            assert request.transport is not None
            request.transport.abort()
            await asyncio.sleep(1)
        return web.json_response({"by": self.name})


async def ask(client: ServiceClient, method: str = "GET") -> str:
    answer = await client.request(method, "/v1/thing", identity=CALLER, json=None)
    return str(answer.json()["by"])


async def test_requests_take_the_replicas_in_turn() -> None:
    a, b = Replica("a"), Replica("b")
    async with (
        serving(a.handle, path="/v1/thing") as url_a,
        serving(b.handle, path="/v1/thing") as url_b,
    ):
        client = ServiceClient(service="orchestrator", base_url=f"{url_a},{url_b}", secret=SECRET)
        try:
            answers = [await ask(client) for _ in range(4)]
        finally:
            await client.aclose()
    assert sorted(answers) == ["a", "a", "b", "b"]


async def test_a_replica_refusing_connections_is_passed_over_for_any_method() -> None:
    alive = Replica("alive")
    async with serving(alive.handle, path="/v1/thing") as url:
        dead = f"http://127.0.0.1:{closed_port()}"
        client = ServiceClient(service="orchestrator", base_url=f"{dead},{url}", secret=SECRET)
        try:
            answers = [await ask(client, method) for method in ("POST", "GET", "POST", "DELETE")]
        finally:
            await client.aclose()
    assert answers == ["alive"] * 4
    assert alive.seen == ["POST", "GET", "POST", "DELETE"]


async def test_a_replica_dying_midway_is_replaced_only_for_a_repeatable_request() -> None:
    dying, alive = Replica("dying", drops=True), Replica("alive")
    async with (
        serving(dying.handle, path="/v1/thing") as url_dying,
        serving(alive.handle, path="/v1/thing") as url_alive,
    ):
        client = ServiceClient(
            service="orchestrator", base_url=f"{url_dying},{url_alive}", secret=SECRET
        )
        try:
            assert await ask(client, "GET") == "alive"  # dying had it first, alive repeated it
            assert await ask(client, "GET") == "alive"  # alive's turn anyway
            with pytest.raises(Unavailable):
                await ask(client, "POST")  # dying had it: a create must not be made twice
        finally:
            await client.aclose()
    # (aiohttp itself may repeat a GET once on the same replica before giving up on it)
    assert dying.seen.count("POST") == 1
    assert alive.seen == ["GET", "GET"]


async def test_no_replica_answering_is_unavailable() -> None:
    dead = ",".join(f"http://127.0.0.1:{closed_port()}" for _ in range(2))
    client = ServiceClient(service="orchestrator", base_url=dead, secret=SECRET)
    try:
        with pytest.raises(Unavailable) as refused:
            await ask(client)
    finally:
        await client.aclose()
    assert refused.value.code == "upstream_unavailable"


def test_a_setting_without_any_url_is_refused() -> None:
    with pytest.raises(ValueError, match="no service URL"):
        ServiceClient(service="orchestrator", base_url=" , ", secret=SECRET)
