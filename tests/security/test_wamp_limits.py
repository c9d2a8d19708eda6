"""WAMP payload limits and timeouts: an oversized message costs only its sender's connection,
a large-but-allowed payload is refused with an error URI, and a node that never answers
gives the cloud's caller a clear timeout, not a hang."""

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from autobahn.wamp.exception import ApplicationError

from edgecloud_contracts import errors, uris
from tests.conftest import ONE_DATABASE
from tests.security.probe_nodes import (
    answer_creates,
    assert_services_healthy,
    create_container,
)
from tests.security.raw_wamp import raw_device
from tests.support.beats import heartbeat
from tests.support.users import register
from tests.support.wamp import device_session, probe_key, service_session

pytestmark = [pytest.mark.stack, ONE_DATABASE]

ROUTER_MAX_MESSAGE = 1 << 20  # infra/router/config.template.json


async def test_an_oversized_message_ends_only_its_senders_connection(stack, enrol) -> None:
    big_key, other_key = probe_key(), probe_key()
    async with (
        device_session(stack, key=other_key, token=await enrol()) as other,
        raw_device(stack, key=big_key, token=await enrol()) as big,
    ):
        oversized = heartbeat(big_key, padding="x" * (ROUTER_MAX_MESSAGE + 1024))
        # The router drops the connection; the call itself never gets an answer.
        pending = asyncio.ensure_future(big.call(uris.HEARTBEAT, oversized))
        try:
            async with asyncio.timeout(10):
                await big.ended
        finally:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        # Everyone else goes on: the other device, the services, a new service session.
        assert other.connected
        ack = await other.call(uris.HEARTBEAT, heartbeat(other_key), timeout=5)
        assert isinstance(ack, dict)
        async with service_session(stack, service="orchestrator") as cloud:
            await cloud.wait_joined(10)
            assert await cloud.is_registered(uris.HEARTBEAT)
        await assert_services_healthy(stack)


async def test_a_large_allowed_payload_is_refused_by_the_procedures_own_limit(stack, enrol) -> None:
    key = probe_key()
    async with raw_device(stack, key=key, token=await enrol()) as device:
        # Under the router's limit, over the heartbeat's.
        large = heartbeat(key, padding="x" * (200 * 1024))
        with pytest.raises(ApplicationError) as refused:
            await device.call(uris.HEARTBEAT, large)
        assert refused.value.error == errors.PAYLOAD_TOO_LARGE
        # A report listing more containers than any node runs.
        at = datetime.now(UTC).isoformat()
        container = {"container_id": None, "docker_id": "d", "docker_name": "n", "image": "i"}
        inventory = [{**container, "state": "running"}] * 1001
        with pytest.raises(ApplicationError) as too_many:
            await device.call(
                uris.NODE_REPORT,
                {"id": None, "at": at, "kind": "inventory", "inventory": inventory},
            )
        assert too_many.value.error == errors.INVALID_ARGUMENT
        # The device's session survives its refused calls.
        assert await device.call(uris.HEARTBEAT, heartbeat(key))


async def test_a_node_that_never_answers_gives_a_clear_timeout(stack, api, enrol) -> None:
    """The orchestrator's call to the node's container.logs has a timeout (the command
    timeout, 15 s by default): the user gets 503 device_unreachable, and meanwhile the
    platform serves everyone else."""
    account = await register(stack)
    key = probe_key()
    called = asyncio.Event()
    never = asyncio.Event()

    async def hang(*_: Any, **__: Any) -> None:
        called.set()
        await never.wait()

    async with device_session(stack, key=key, token=await enrol()) as node:
        await node.call(uris.HEARTBEAT, heartbeat(key), timeout=5)
        granted = await api.post(
            f"/api/v1/devices/{key}/grants", json={"tenant": account.tenant_id}
        )
        assert granted.status_code == 201
        await answer_creates(node, key)
        container = await create_container(stack, account, key)
        await node.register(uris.device_procedure(key, uris.CONTAINER_LOGS), hang)
        async with httpx.AsyncClient(
            base_url=stack.url("gateway"), headers=account.headers, timeout=60
        ) as client:
            started = time.monotonic()
            logs = asyncio.create_task(client.get(f"/api/v1/containers/{container['id']}/logs"))
            async with asyncio.timeout(10):
                await called.wait()
            # While the call hangs: the same tenant, the same node and other tenants are served.
            assert (await client.get(f"/api/v1/containers/{container['id']}")).status_code == 200
            await node.call(uris.HEARTBEAT, heartbeat(key, seq=2), timeout=5)
            await assert_services_healthy(stack)
            answer = await logs
            waited = time.monotonic() - started
        never.set()
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == "device_unreachable"
    assert "timed out" in answer.json()["detail"]
    # Generous: the orchestrator's command timeout plus the gateway's hop, never a hang.
    assert waited < 45
