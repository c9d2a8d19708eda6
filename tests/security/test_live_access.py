"""Access taken away reaches connections already open, and no tenant takes every connection.

An event stream is authorised when it opens and then stays open for hours; these tests take
the access away in each way a tenant's admin or a user can (revoke the token, sign out,
remove the member, change the role) and wait for the stream to end with the reason. The
shares: one user holds at most its number of streams, and while it holds them another
tenant is served and opens its own.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.conftest import eventually
from tests.support.stack import Stack
from tests.support.users import Account, invite, login, register

pytestmark = pytest.mark.stack

STREAMS_PER_USER = 5
"""GATEWAY_LIVE_EVENTS_PER_USER's default, which the shared stack keeps."""


class Stream:
    """One open ``GET /api/v1/events``: the events it delivered, and whether it ended."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()
        self.status = 0

    def ended_with(self) -> str | None:
        for kind, data in self.events:
            if kind == "end":
                return str(data["reason"])
        return None


@asynccontextmanager
async def event_stream(url: str, headers: dict[str, str]) -> AsyncIterator[Stream]:
    stream = Stream()

    async def read() -> None:
        try:
            async with (
                httpx.AsyncClient(base_url=url, timeout=60) as client,
                client.stream("GET", "/api/v1/events", headers=headers) as answer,
            ):
                stream.status = answer.status_code
                stream.opened.set()
                kind = ""
                async for line in answer.aiter_lines():
                    if line.startswith("event: "):
                        kind = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        stream.events.append((kind, json.loads(line.removeprefix("data: "))))
        finally:
            stream.opened.set()
            stream.closed.set()

    reader = asyncio.create_task(read())
    try:
        async with asyncio.timeout(10):
            await stream.opened.wait()
        yield stream
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def ends(stream: Stream, reason: str) -> None:
    """The stream was closed by the gateway, its last event saying why."""
    async with asyncio.timeout(10):
        await stream.closed.wait()
    assert stream.ended_with() == reason, stream.events


async def api_token(stack: Stack, user: Account) -> tuple[str, dict[str, str]]:
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        made = await client.post("/api/v1/tokens", json={"name": "events"}, headers=user.headers)
    assert made.status_code == 201, made.text
    return made.json()["id"], {"Authorization": f"Bearer {made.json()['token']}"}


async def member_of(stack: Stack, admin: Account, role: str = "member") -> Account:
    """A second user, who joins ``admin``'s tenant and signs in to it."""
    joined = await register(stack, invitation=await invite(stack, admin, role))
    joined.token = await login(stack, joined.username, joined.password, admin.tenant_id)
    return joined


async def test_revoking_a_token_ends_its_event_stream(stack: Stack) -> None:
    user = await register(stack)
    token_id, headers = await api_token(stack, user)
    gateway = stack.url("gateway")
    async with (
        event_stream(gateway, headers) as revoked,
        event_stream(gateway, user.headers) as unaffected,
    ):
        assert revoked.status == unaffected.status == 200
        async with httpx.AsyncClient(base_url=gateway, timeout=10) as client:
            gone = await client.delete(f"/api/v1/tokens/{token_id}", headers=user.headers)
        assert gone.status_code == 204
        await ends(revoked, "access_revoked")
        # The user's own session is not the revoked token: its stream goes on.
        assert not unaffected.closed.is_set()


async def test_signing_out_ends_the_sessions_streams(stack: Stack) -> None:
    user = await register(stack)
    gateway = stack.url("gateway")
    async with event_stream(gateway, user.headers) as stream:
        async with httpx.AsyncClient(base_url=gateway, timeout=10) as client:
            out = await client.post("/api/v1/auth/logout", headers=user.headers)
        assert out.status_code == 204
        await ends(stream, "access_revoked")


async def test_removing_a_member_or_changing_a_role_ends_their_streams(stack: Stack) -> None:
    admin = await register(stack)
    removed, changed = await member_of(stack, admin), await member_of(stack, admin)
    gateway = stack.url("gateway")
    async with (
        event_stream(gateway, removed.headers) as removed_stream,
        event_stream(gateway, changed.headers) as changed_stream,
        event_stream(gateway, admin.headers) as admins_stream,
        httpx.AsyncClient(base_url=gateway, timeout=10, headers=admin.headers) as client,
    ):
        out = await client.delete(f"/api/v1/members/{removed.user_id}")
        assert out.status_code == 204, out.text
        await ends(removed_stream, "access_revoked")
        promoted = await client.patch(
            f"/api/v1/members/{changed.user_id}", json={"role": "tenant_admin"}
        )
        assert promoted.status_code == 200, promoted.text
        await ends(changed_stream, "role_changed")
        assert not admins_stream.closed.is_set()
    # The one whose role changed opens a stream again, with the role it has now.
    async with event_stream(gateway, changed.headers) as again:
        assert again.status == 200


async def test_disabling_an_account_ends_its_streams(stack: Stack) -> None:
    admin = await register(stack)
    member = await member_of(stack, admin)
    gateway = stack.url("gateway")
    async with event_stream(gateway, member.headers) as stream:
        async with httpx.AsyncClient(base_url=gateway, timeout=10) as client:
            disabled = await client.post(
                f"/api/v1/users/{member.user_id}/disable", headers=admin.headers
            )
        assert disabled.status_code in (200, 204), disabled.text
        await ends(stream, "access_revoked")


async def test_a_user_holds_a_limited_number_of_streams_and_others_are_served(
    stack: Stack,
) -> None:
    greedy, neighbour = await register(stack), await register(stack)
    gateway = stack.url("gateway")
    async with contextlib.AsyncExitStack() as held:
        for _ in range(STREAMS_PER_USER):
            stream = await held.enter_async_context(event_stream(gateway, greedy.headers))
            assert stream.status == 200
        async with httpx.AsyncClient(base_url=gateway, timeout=10) as client:
            refused = await client.get("/api/v1/events", headers=greedy.headers)
            assert refused.status_code == 429
            assert refused.json()["code"] == "too_many_streams"
            assert int(refused.headers["Retry-After"]) > 0
            # The neighbour's short requests and own stream are served meanwhile.
            listed = await client.get("/api/v1/containers", headers=neighbour.headers)
            assert listed.status_code == 200
        async with event_stream(gateway, neighbour.headers) as theirs:
            assert theirs.status == 200
    # Closed streams give their places back.

    async def admitted() -> bool:
        async with event_stream(gateway, greedy.headers) as again:
            return again.status == 200

    assert await eventually(admitted, timeout=10)
