"""Request bodies: every route of every service takes at most 1 MiB (the services'
``max_body_bytes``) unless it sets its own limit (uploads: 8 GiB), and a larger body is
refused with 413 problem+json ``payload_too_large`` before the route runs: a declared
length before a byte of the body is read, a chunked body where it crosses the limit.
(Uploads over the storage limits and the tenant's quota: tests/integration/test_artifacts.py.)
"""

import asyncio
import hashlib
import json
import os
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import ONE_DATABASE
from tests.support.stack import Stack
from tests.support.users import Account, register

pytestmark = [pytest.mark.stack, ONE_DATABASE]

LIMIT = 1 << 20
JSON_ROUTES = {
    "gateway": "/api/v1/tokens",
    "registry": "/v1/enrolments",
    "orchestrator": "/v1/containers",
    "storage": "/v1/artifacts/expected",
    "migration-scheduler": "/v1/migrations",
}
ANSWER_WITHIN_S = 10.0


async def exchange(
    stack: Stack, service: str, head: str, pieces: list[bytes] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Send a request head and then ``pieces`` as they are (no framing added); the status,
    headers and body of the answer, read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.ports[service])
    try:
        host = urlsplit(stack.url(service)).netloc
        writer.write(f"{head}Host: {host}\r\n\r\n".encode())
        for piece in pieces or []:
            writer.write(piece)
            await writer.drain()
        raw = await asyncio.wait_for(reader.read(), ANSWER_WITHIN_S)
    finally:
        writer.close()
    header_block, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = header_block.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    return int(status_line.split()[1]), headers, body


def assert_too_large(answer: tuple[int, dict[str, str], bytes]) -> None:
    status, headers, body = answer
    assert status == 413, (status, body[:300])
    assert headers["content-type"].startswith("application/problem+json")
    assert json.loads(body)["code"] == "payload_too_large"
    assert headers["connection"] == "close"


def chunked(total: int, piece: int = 64 * 1024) -> list[bytes]:
    """``total`` bytes as HTTP chunks, without the closing one: the sender is still going."""
    return [b"%x\r\n%s\r\n" % (piece, b"x" * piece) for _ in range(total // piece)]


@pytest.fixture
async def tenant(stack: Stack) -> Account:
    return await register(stack)


async def token_names(stack: Stack, tenant: Account) -> list[str]:
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        answer = await client.get("/api/v1/tokens", headers=tenant.headers)
        return sorted(item["name"] for item in answer.json()["items"])


@pytest.mark.parametrize("service", list(JSON_ROUTES))
async def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(
    stack: Stack, service: str
) -> None:
    """Only the request head goes out: the answer comes without the server waiting for the
    body, and before any authentication (internal services: no identity sent)."""
    path = JSON_ROUTES[service]
    assert_too_large(
        await exchange(
            stack,
            service,
            f"POST {path} HTTP/1.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {LIMIT + 1}\r\n",
        )
    )


async def test_a_route_that_ignores_its_body_does_not_run_for_an_oversized_one(
    stack: Stack, tenant: Account
) -> None:
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        made = await client.post("/api/v1/tokens", json={"name": "keep"}, headers=tenant.headers)
    assert made.status_code == 201, made.text
    answer = await exchange(
        stack,
        "gateway",
        f"DELETE /api/v1/tokens/{made.json()['id']} HTTP/1.1\r\n"
        f"Authorization: Bearer {tenant.token}\r\nContent-Length: {4 * LIMIT}\r\n",
    )
    assert_too_large(answer)
    assert await token_names(stack, tenant) == ["keep"]


async def test_a_chunked_body_is_cut_off_where_it_crosses_the_limit(
    stack: Stack, tenant: Account
) -> None:
    before = await token_names(stack, tenant)
    answer = await exchange(
        stack,
        "gateway",
        "POST /api/v1/tokens HTTP/1.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {tenant.token}\r\nTransfer-Encoding: chunked\r\n",
        # The limit exactly, then one byte more: the server has read all that was sent
        # when it answers (unread bytes would make its close a reset).
        [*chunked(LIMIT), b"1\r\nx\r\n"],
    )
    assert_too_large(answer)
    assert await token_names(stack, tenant) == before


async def test_a_body_within_the_limit_reaches_the_route(stack: Stack, tenant: Account) -> None:
    """Just under the limit: the route's own validation answers (the name is too long)."""
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        answer = await client.post(
            "/api/v1/tokens", json={"name": "n" * (LIMIT - 100)}, headers=tenant.headers
        )
    assert answer.status_code == 422, answer.text[:300]


async def test_uploads_keep_their_own_larger_limit(stack: Stack, tenant: Account) -> None:
    """A 3 MiB piece of an upload (PATCH) and a 3 MiB one-request upload (multipart) pass
    the gateway and the storage whole."""
    data = os.urandom(3 * LIMIT)
    async with httpx.AsyncClient(
        base_url=stack.url("gateway"), timeout=30, headers=tenant.headers
    ) as client:
        announced = await client.post(
            "/api/v1/artifacts",
            json={"name": "big.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        )
        assert announced.status_code == 201, announced.text
        piece = await client.patch(
            f"/api/v1/artifacts/{announced.json()['id']}",
            content=data,
            headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"},
        )
        assert piece.status_code == 200, piece.text
        assert piece.json()["state"] == "complete"
        one_request = await client.post("/api/v1/artifacts", files={"file": ("one.bin", data)})
        assert one_request.status_code == 201, one_request.text
        assert one_request.json()["size"] == len(data)
