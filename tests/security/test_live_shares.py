"""The gateway's long-lived connections under pressure, on two gateway replicas.

A tenant opens as many event streams as it can; the gateway refuses it at its budget for
long-lived connections, below the process's connection limit, and another tenant's short
requests keep being served meanwhile. Access revoked through one replica ends a stream held
on the other.
"""

import asyncio
import contextlib
from collections.abc import Iterator

import httpx
import pytest

from tests.security.test_live_access import api_token, ends, event_stream
from tests.support.stack import Stack
from tests.support.users import register

pytestmark = pytest.mark.stack

MAX_CONNECTIONS = 40
BUDGET = 30


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(
        backend="postgresql",
        workdir=tmp_path_factory.mktemp("crowded"),
        replicas={"gateway": 2},
        extra_env={
            "GATEWAY_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
            "GATEWAY_LIVE_CONNECTION_BUDGET": str(BUDGET),
            # Only the budget stands between one tenant and the process's limit.
            "GATEWAY_LIVE_EVENTS_PER_USER": "1000",
            "GATEWAY_LIVE_EVENTS_PER_TENANT": "1000",
        },
    )
    with stack.running():
        yield stack


async def test_a_tenant_filling_the_gateway_leaves_room_for_short_requests(
    crowded: Stack,
) -> None:
    greedy, neighbour = await register(crowded), await register(crowded)
    gateway = crowded.urls("gateway")[0]
    async with contextlib.AsyncExitStack() as held, httpx.AsyncClient(timeout=10) as client:
        opened = 0
        for _ in range(MAX_CONNECTIONS + 5):
            stream = await held.enter_async_context(event_stream(gateway, greedy.headers))
            if stream.status != 200:
                break
            opened += 1
        refused = await client.get(f"{gateway}/api/v1/events", headers=greedy.headers)
        assert opened == BUDGET
        assert refused.status_code == 503
        assert refused.json()["code"] == "live_connections_full"
        assert int(refused.headers["Retry-After"]) > 0

        async def list_containers() -> int:
            answer = await client.get(f"{gateway}/api/v1/containers", headers=neighbour.headers)
            return answer.status_code

        for _ in range(6):
            statuses = await asyncio.gather(*(list_containers() for _ in range(5)))
            assert statuses == [200] * 5


async def test_access_revoked_on_one_replica_ends_a_stream_on_the_other(crowded: Stack) -> None:
    user = await register(crowded)
    first, second = crowded.urls("gateway")
    token_id, headers = await api_token(crowded, user)
    async with event_stream(second, headers) as stream, httpx.AsyncClient(timeout=10) as client:
        assert stream.status == 200
        gone = await client.delete(f"{first}/api/v1/tokens/{token_id}", headers=user.headers)
        assert gone.status_code == 204
        await ends(stream, "access_revoked")
